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

{{/* The ConfigMap every ADX process reads its settings from. Args: root. */}}
{{- define "adx-core.envFrom" -}}
envFrom:
  - configMapRef:
      name: {{ include "adx-core.fullname" .root }}
{{- end }}

{{/* The volumeMounts of an ADX container. Args: root. */}}
{{- define "adx-core.volumeMounts" -}}
{{- $v := .root.Values }}
- name: tmp
  mountPath: /tmp
{{- if eq $v.storage.provider "local" }}
- name: storage
  mountPath: {{ $v.storage.local.path }}
{{- end }}
{{- if $v.temporal.tls.enabled }}
- name: temporal-tls
  mountPath: /etc/adx/temporal-tls
  readOnly: true
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
# The root filesystem is read-only; Python and the SDKs need a writable /tmp.
- name: tmp
  emptyDir:
    sizeLimit: 256Mi
{{- if eq $v.storage.provider "local" }}
- name: storage
  emptyDir:
    sizeLimit: {{ $v.storage.local.sizeLimit }}
{{- end }}
{{- if $v.temporal.tls.enabled }}
- name: temporal-tls
  secret:
    secretName: {{ $v.temporal.tls.existingSecret }}
{{- end }}
{{- if and (eq $v.storage.provider "gcs") $v.storage.gcs.credentials.existingSecret }}
- name: gcs-credentials
  secret:
    secretName: {{ $v.storage.gcs.credentials.existingSecret }}
{{- end }}
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
