{{/* Names, labels and the shared pieces of every workload. */}}

{{- define "adx-core.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "adx-core.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "adx-core.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The image tag: image.tag, else the chart's appVersion. */}}
{{- define "adx-core.tag" -}}
{{- .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "adx-core.image" -}}
{{- printf "%s:%s" .Values.image.repository (include "adx-core.tag" .) }}
{{- end }}

{{/* Selector labels: stable for the life of a release, so never the version. Args: root, component. */}}
{{- define "adx-core.selectorLabels" -}}
app.kubernetes.io/name: {{ include "adx-core.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
Every label of an object. Args: root, component, and optionally tag (a worker version's image
tag, else the chart's) and buildId (a worker version's; then also a selector label).
*/}}
{{- define "adx-core.labels" -}}
{{ include "adx-core.selectorLabels" . }}
{{- with .buildId }}
adx.dev/build-id: {{ . | quote }}
{{- end }}
app.kubernetes.io/part-of: adx-core
app.kubernetes.io/version: {{ .tag | default (include "adx-core.tag" .root) | replace "+" "_" | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ include "adx-core.chart" .root }}
{{- end }}

{{/* The name of a Secret reference: its own existingSecret, else secrets.existingSecret. Args: root, ref. */}}
{{- define "adx-core.secretName" -}}
{{- .ref.existingSecret | default .root.Values.secrets.existingSecret }}
{{- end }}

{{/* One env entry read from a Secret. Args: root, name, ref (existingSecret), key. */}}
{{- define "adx-core.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ include "adx-core.secretName" . }}
      key: {{ .key }}
{{- end }}

{{/* The secret settings of a role. Args: root, database (bool: the operator needs none). */}}
{{- define "adx-core.secretEnvs" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
{{- if .database }}
{{ include "adx-core.secretEnv" (dict "root" $root "name" "ADX_DATABASE_URL" "ref" $v.database.url "key" $v.database.url.key) }}
{{- end }}
{{- if $v.auth.jwt.secret.enabled }}
{{ include "adx-core.secretEnv" (dict "root" $root "name" "ADX_JWT_SECRET" "ref" $v.auth.jwt.secret "key" $v.auth.jwt.secret.key) }}
{{- end }}
{{ include "adx-core.secretEnv" (dict "root" $root "name" "ADX_CODEC_KEYS" "ref" $v.codec.keys "key" $v.codec.keys.key) }}
{{- if $v.temporal.apiKey.enabled }}
{{ include "adx-core.secretEnv" (dict "root" $root "name" "ADX_TEMPORAL_API_KEY" "ref" $v.temporal.apiKey "key" $v.temporal.apiKey.key) }}
{{- end }}
{{- if eq $v.storage.provider "s3" }}
{{- $c := $v.storage.s3.credentials }}
{{ include "adx-core.secretEnv" (dict "root" $root "name" "ADX_S3_ACCESS_KEY" "ref" $c "key" $c.accessKeyKey) }}
{{ include "adx-core.secretEnv" (dict "root" $root "name" "ADX_S3_SECRET_KEY" "ref" $c "key" $c.secretKeyKey) }}
{{- end }}
{{- if eq $v.storage.provider "azure" }}
{{- $c := $v.storage.azure.credentials }}
{{- if $v.storage.azure.accountUrl }}
{{ include "adx-core.secretEnv" (dict "root" $root "name" "ADX_AZURE_ACCOUNT_KEY" "ref" $c "key" $c.accountKeyKey) }}
{{- else }}
{{ include "adx-core.secretEnv" (dict "root" $root "name" "ADX_AZURE_CONNECTION_STRING" "ref" $c "key" $c.connectionStringKey) }}
{{- end }}
{{- end }}
{{- $n := $v.notifications }}
{{- /* A password without a user name would never be sent: aiosmtplib logs in only with both. */}}
{{- if and (eq $n.provider "smtp") $n.smtp.username }}
{{ include "adx-core.secretEnv" (dict "root" $root "name" "ADX_SMTP_PASSWORD" "ref" $n.smtp.password "key" $n.smtp.password.key) }}
{{- end }}
{{- if and (eq $n.provider "webhook") $n.webhook.secret.enabled }}
{{ include "adx-core.secretEnv" (dict "root" $root "name" "ADX_NOTIFY_WEBHOOK_SECRET" "ref" $n.webhook.secret "key" $n.webhook.secret.key) }}
{{- end }}
{{- range $v.extraSecretEnv }}
{{ include "adx-core.secretEnv" (dict "root" $root "name" .name "ref" . "key" .key) }}
{{- end }}
{{- end }}

{{/* The pod's securityContext: every pod of the chart runs as 10001, never as root. */}}
{{- define "adx-core.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* A container's securityContext: read-only root, no privilege, no capability. */}}
{{- define "adx-core.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
privileged: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
The non-secret settings of every ADX process, as a JSON object of name -> string: the
ConfigMap's data, and the inline env of the migration Job (which runs before the ConfigMap
exists), so that the list is written once. Args: the root context.
*/}}
{{- define "adx-core.configData" -}}
{{- $v := .Values }}
{{- $d := dict "ADX_ENV" $v.environment "ADX_LOG_LEVEL" $v.log.level "ADX_LOG_FORMAT" $v.log.format }}
{{- /* In a pod every role listens on all interfaces, as the image sets, so the kubelet reaches it. */}}
{{- $_ := set $d "ADX_API_HOST" "0.0.0.0" }}
{{- $_ = set $d "ADX_API_PORT" (toString $v.api.port) }}
{{- $_ = set $d "ADX_WORKER_HTTP_HOST" "0.0.0.0" }}
{{- $_ = set $d "ADX_WORKER_HTTP_PORT" (toString $v.workers.port) }}
{{- $_ = set $d "ADX_OPERATOR_HTTP_HOST" "0.0.0.0" }}
{{- $_ = set $d "ADX_OPERATOR_HTTP_PORT" (toString $v.operator.port) }}
{{- $_ = set $d "ADX_TEMPORAL_ADDRESS" $v.temporal.address }}
{{- $_ = set $d "ADX_TEMPORAL_NAMESPACE" $v.temporal.namespace }}
{{- with $v.temporal.taskQueuePrefix }}{{ $_ = set $d "ADX_TASK_QUEUE_PREFIX" . }}{{ end }}
{{- $tls := $v.temporal.tls }}
{{- if $tls.enabled }}
{{- $dir := include "adx-core.temporalTlsDir" . }}
{{- with $tls.caKey }}{{ $_ = set $d "ADX_TEMPORAL_TLS_CA" (printf "%s/%s" $dir .) }}{{ end }}
{{- if $tls.certKey }}
{{- $_ = set $d "ADX_TEMPORAL_TLS_CERT" (printf "%s/%s" $dir $tls.certKey) }}
{{- $_ = set $d "ADX_TEMPORAL_TLS_KEY" (printf "%s/%s" $dir $tls.keyKey) }}
{{- end }}
{{- end }}
{{- with $tls.serverName }}{{ $_ = set $d "ADX_TEMPORAL_TLS_SERVER_NAME" . }}{{ end }}
{{- $_ = set $d "ADX_DATABASE_POOL_SIZE" (toString $v.database.poolSize) }}
{{- $_ = set $d "ADX_JWT_ISSUER" $v.auth.jwt.issuer }}
{{- $_ = set $d "ADX_JWT_AUDIENCE" $v.auth.jwt.audience }}
{{- with $v.auth.jwt.jwksUrl }}{{ $_ = set $d "ADX_JWT_JWKS_URL" . }}{{ end }}
{{- with $v.auth.jwt.externalIssuer }}{{ $_ = set $d "ADX_JWT_EXTERNAL_ISSUER" . }}{{ end }}
{{- with $v.codec.activeKeyId }}{{ $_ = set $d "ADX_CODEC_ACTIVE_KEY_ID" . }}{{ end }}
{{- with $v.api.corsAllowedOrigins }}{{ $_ = set $d "ADX_CORS_ALLOWED_ORIGINS" (join "," .) }}{{ end }}
{{- include "adx-core.storageConfig" (dict "v" $v "d" $d) }}
{{- include "adx-core.notificationConfig" (dict "v" $v "d" $d) }}
{{- $_ = set $d "ADX_SCANNER" $v.scanner.kind }}
{{- if eq $v.scanner.kind "clamd" }}{{ $_ = set $d "ADX_CLAMD_ADDRESS" $v.scanner.clamd.address }}{{ end }}
{{- range $name, $value := $v.config }}{{ $_ = set $d $name (include "adx-core.settingString" $value) }}{{ end }}
{{- toJson $d }}
{{- end }}

{{/*
A value of config as the string the app parses. Helm reads every number of a values file as a
float, which toString writes as 1.048576e+08 from eight digits on: the app's integer settings
would refuse that, so a whole number (within a float's exact integers) is written as an integer.
*/}}
{{- define "adx-core.settingString" -}}
{{- if and (kindIs "float64" .) (eq . (floor .)) (lt . 1e15) (gt . -1e15) }}{{ int64 . }}{{ else }}{{ toString . }}{{ end }}
{{- end }}

{{/* The storage provider's non-secret settings, set into d. Args: v (.Values), d (a dict). */}}
{{- define "adx-core.storageConfig" -}}
{{- $s := .v.storage }}
{{- $d := .d }}
{{- $_ := set $d "ADX_STORAGE_PROVIDER" $s.provider }}
{{- if eq $s.provider "local" }}
{{- $_ = set $d "ADX_STORAGE_ROOT" $s.local.path }}
{{- else if eq $s.provider "s3" }}
{{- $_ = set $d "ADX_S3_BUCKET" $s.s3.bucket }}
{{- $_ = set $d "ADX_S3_REGION" $s.s3.region }}
{{- $_ = set $d "ADX_S3_SECURE" (ternary "true" "false" $s.s3.secure) }}
{{- with $s.s3.endpoint }}{{ $_ = set $d "ADX_S3_ENDPOINT" . }}{{ end }}
{{- else if eq $s.provider "gcs" }}
{{- $_ = set $d "ADX_GCS_BUCKET" $s.gcs.bucket }}
{{- with $s.gcs.project }}{{ $_ = set $d "ADX_GCS_PROJECT" . }}{{ end }}
{{- with $s.gcs.endpoint }}{{ $_ = set $d "ADX_GCS_ENDPOINT" . }}{{ end }}
{{- if $s.gcs.credentials.existingSecret }}
{{- $_ = set $d "GOOGLE_APPLICATION_CREDENTIALS" (printf "/etc/adx/gcs/%s" $s.gcs.credentials.key) }}
{{- end }}
{{- else if eq $s.provider "azure" }}
{{- $_ = set $d "ADX_AZURE_CONTAINER" $s.azure.container }}
{{- with $s.azure.accountUrl }}{{ $_ = set $d "ADX_AZURE_ACCOUNT_URL" . }}{{ end }}
{{- end }}
{{- end }}

{{/*
The notifier's non-secret settings, set into d: only the chosen provider's, since the other's
would be ignored. Args: v (.Values), d (a dict).
*/}}
{{- define "adx-core.notificationConfig" -}}
{{- $n := .v.notifications }}
{{- $d := .d }}
{{- $_ := set $d "ADX_NOTIFY_PROVIDER" $n.provider }}
{{- with $n.from }}{{ $_ = set $d "ADX_NOTIFY_FROM" . }}{{ end }}
{{- $_ = set $d "ADX_NOTIFY_TIMEOUT_SECONDS" (toString $n.timeoutSeconds) }}
{{- if eq $n.provider "smtp" }}
{{- $_ = set $d "ADX_SMTP_HOST" $n.smtp.host }}
{{- $_ = set $d "ADX_SMTP_PORT" (toString $n.smtp.port) }}
{{- $_ = set $d "ADX_SMTP_SECURITY" $n.smtp.security }}
{{- with $n.smtp.username }}{{ $_ = set $d "ADX_SMTP_USERNAME" . }}{{ end }}
{{- else }}
{{- $_ = set $d "ADX_NOTIFY_WEBHOOK_URL" $n.webhook.url }}
{{- end }}
{{- end }}

{{/* The ConfigMap every ADX process reads its settings from. Args: root. */}}
{{- define "adx-core.envFrom" -}}
envFrom:
  - configMapRef:
      name: {{ include "adx-core.fullname" .root }}
{{- end }}

{{/* The writable /tmp of every container: the root filesystem is read-only. */}}
{{- define "adx-core.tmpVolumeMount" -}}
- name: tmp
  mountPath: /tmp
{{- end }}

{{/* The volume behind adx-core.tmpVolumeMount: Python and the SDKs need a writable /tmp, and
the files worker spools files there. Args: root, and spec (a component's values) if any. */}}
{{- define "adx-core.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ dig "tmpSizeLimit" "" (.spec | default dict) | default .root.Values.podDefaults.tmpSizeLimit }}
{{- end }}

{{/* Where the Temporal TLS Secret's files are: ADX_TEMPORAL_TLS_* name files in it. */}}
{{- define "adx-core.temporalTlsDir" -}}
/etc/adx/temporal-tls
{{- end }}

{{/* Mounts the Temporal TLS Secret; callers include it only with temporal.tls.enabled. */}}
{{- define "adx-core.temporalTlsVolumeMount" -}}
- name: temporal-tls
  mountPath: {{ include "adx-core.temporalTlsDir" . }}
  readOnly: true
{{- end }}

{{/* The volume behind adx-core.temporalTlsVolumeMount. Args: root. */}}
{{- define "adx-core.temporalTlsVolume" -}}
- name: temporal-tls
  secret:
    secretName: {{ .root.Values.temporal.tls.existingSecret }}
{{- end }}

{{/* The volumeMounts of an ADX container. Args: root. */}}
{{- define "adx-core.volumeMounts" -}}
{{- $v := .root.Values }}
{{ include "adx-core.tmpVolumeMount" . }}
{{- if eq $v.storage.provider "local" }}
- name: storage
  mountPath: {{ $v.storage.local.path }}
{{- end }}
{{- if $v.temporal.tls.enabled }}
{{ include "adx-core.temporalTlsVolumeMount" . }}
{{- end }}
{{- if and (eq $v.storage.provider "gcs") $v.storage.gcs.credentials.existingSecret }}
- name: gcs-credentials
  mountPath: /etc/adx/gcs
  readOnly: true
{{- end }}
{{- end }}

{{/* The volumes behind adx-core.volumeMounts. Args: root. */}}
{{- define "adx-core.volumes" -}}
{{- $v := .root.Values }}
{{ include "adx-core.tmpVolume" . }}
{{- if eq $v.storage.provider "local" }}
- name: storage
{{- if $v.storage.local.persistence.enabled }}
  persistentVolumeClaim:
    claimName: {{ include "adx-core.storageClaimName" .root }}
{{- else }}
  # One per pod: not shared with the other pods, and lost with the pod (see NOTES.txt).
  emptyDir:
    sizeLimit: {{ $v.storage.local.sizeLimit }}
{{- end }}
{{- end }}
{{- if $v.temporal.tls.enabled }}
{{ include "adx-core.temporalTlsVolume" . }}
{{- end }}
{{- if and (eq $v.storage.provider "gcs") $v.storage.gcs.credentials.existingSecret }}
- name: gcs-credentials
  secret:
    secretName: {{ $v.storage.gcs.credentials.existingSecret }}
{{- end }}
{{- end }}

{{/*
A pre-install hook Job's name, <fullname>-<component>; a Job's name is also a label value, so at
most 63 characters. Args: root, component.
*/}}
{{- define "adx-core.hookJobName" -}}
{{- $suffix := printf "-%s" .component }}
{{- printf "%s%s" (include "adx-core.fullname" .root | trunc (int (sub 63 (len $suffix))) | trimSuffix "-") $suffix }}
{{- end }}

{{/* The claim every pod mounts local storage from: existingClaim, else the chart's. */}}
{{- define "adx-core.storageClaimName" -}}
{{- .Values.storage.local.persistence.existingClaim | default (printf "%s-storage" (include "adx-core.fullname" .)) }}
{{- end }}

{{/* The pod's imagePullSecrets; the caller includes it only when there are some. Args: root. */}}
{{- define "adx-core.imagePullSecrets" -}}
imagePullSecrets:
  {{- range .root.Values.imagePullSecrets }}
  - name: {{ . }}
  {{- end }}
{{- end }}

{{/*
A Deployment of one role. Args: root, component, name (resource name), args (container args),
port, spec (replicas, resources, affinity, autoscaling), serviceAccount, database (bool), env
(extra env entries, a list of maps); a worker version also passes image (repository:tag), tag
and buildId, which joins the selector so that two versions' Deployments never share a pod.
*/}}
{{- define "adx-core.deployment" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
{{- $sel := dict "root" $root "component" .component "tag" .tag "buildId" .buildId }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .name }}
  labels:
    {{- include "adx-core.labels" $sel | nindent 4 }}
spec:
  {{- if not (and .spec.autoscaling .spec.autoscaling.enabled) }}
  replicas: {{ .spec.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "adx-core.selectorLabels" $sel | nindent 6 }}
      {{- with .buildId }}
      adx.dev/build-id: {{ . | quote }}
      {{- end }}
  template:
    metadata:
      labels:
        {{- include "adx-core.labels" $sel | nindent 8 }}
        {{- with $v.podDefaults.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        # A changed ConfigMap rolls the pods, which read it only at start.
        checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
        {{- with $v.podDefaults.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ .serviceAccount }}
      automountServiceAccountToken: {{ or (eq .component "operator") $v.serviceAccounts.automountToken }}
      terminationGracePeriodSeconds: {{ $v.podDefaults.terminationGracePeriodSeconds }}
      {{- if $v.imagePullSecrets }}
      {{- include "adx-core.imagePullSecrets" . | nindent 6 }}
      {{- end }}
      securityContext:
        {{- include "adx-core.podSecurityContext" . | nindent 8 }}
      containers:
        - name: {{ .component }}
          image: {{ .image | default (include "adx-core.image" $root) | quote }}
          imagePullPolicy: {{ $v.image.pullPolicy }}
          args:
            {{- toYaml .args | nindent 12 }}
          ports:
            - name: http
              containerPort: {{ .port }}
              protocol: TCP
          {{- include "adx-core.envFrom" . | nindent 10 }}
          env:
            {{- include "adx-core.secretEnvs" (dict "root" $root "database" .database) | trim | nindent 12 }}
            {{- with .env }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          livenessProbe:
            httpGet:
              path: /healthz
              port: http
            {{- toYaml $v.probes.liveness | nindent 12 }}
          readinessProbe:
            httpGet:
              path: /readyz
              port: http
            {{- toYaml $v.probes.readiness | nindent 12 }}
          resources:
            {{- toYaml .spec.resources | nindent 12 }}
          securityContext:
            {{- include "adx-core.containerSecurityContext" . | nindent 12 }}
          volumeMounts:
            {{- include "adx-core.volumeMounts" . | nindent 12 }}
      volumes:
        {{- include "adx-core.volumes" . | nindent 8 }}
      {{- with ($v.podDefaults.nodeSelector) }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .spec.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.podDefaults.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end }}

{{/*
The versions of a worker service, resolved, as a JSON list: buildId (explicit, else the
version's image tag), name (the build id in a DNS-safe form, for resource names), image
(repository:tag), tag, replicas and resources (the version's, else the service's), current
(bool). An empty currentBuildId with a single version means that version. Args: root, svc.
*/}}
{{- define "adx-core.workerVersions" -}}
{{- $root := .root }}
{{- $w := index $root.Values.workers .svc }}
{{- $resolved := list }}
{{- range $w.versions }}
{{- $image := .image | default dict }}
{{- $tag := $image.tag | default (include "adx-core.tag" $root) | toString }}
{{- $repo := $image.repository | default $root.Values.image.repository }}
{{- $id := .buildId | default $tag | toString }}
{{- $current := $w.currentBuildId | default (ternary $id "" (eq (len $w.versions) 1)) | toString }}
{{- $resolved = append $resolved (dict "buildId" $id "name" ($id | lower | replace "_" "-" | replace "." "-") "image" (printf "%s:%s" $repo $tag) "tag" $tag "replicas" .replicas "resources" (.resources | default $w.resources) "current" (eq $id $current)) }}
{{- end }}
{{- toJson $resolved }}
{{- end }}

{{/* The resolved current version of a worker service (see adx-core.workerVersions), as JSON. Args: root, svc. */}}
{{- define "adx-core.currentWorkerVersion" -}}
{{- $found := dict }}
{{- range fromJsonArray (include "adx-core.workerVersions" .) }}
{{- if .current }}{{ $found = . }}{{ end }}
{{- end }}
{{- toJson $found }}
{{- end }}

{{/* The workloads as (component, resource name, values) for Services, PDBs and policies. */}}
{{- define "adx-core.workerNames" -}}
{{- list "tenants" "files" "users" | toJson }}
{{- end }}
