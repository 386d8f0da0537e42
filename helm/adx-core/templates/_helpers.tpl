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

{{/* Every label of an object. Args: root, component. */}}
{{- define "adx-core.labels" -}}
{{ include "adx-core.selectorLabels" . }}
app.kubernetes.io/part-of: adx-core
app.kubernetes.io/version: {{ include "adx-core.tag" .root | replace "+" "_" | trunc 63 | trimSuffix "-" | quote }}
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

{{/*
A Deployment of one role. Args: root, component, name (resource name), args (container args),
port, spec (the component's values: replicas, resources, affinity, autoscaling),
serviceAccount, database (bool), env (extra env entries, a list of maps).
*/}}
{{- define "adx-core.deployment" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
{{- $sel := dict "root" $root "component" .component }}
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
      {{- with $v.imagePullSecrets }}
      imagePullSecrets:
        {{- range . }}
        - name: {{ . }}
        {{- end }}
      {{- end }}
      securityContext:
        runAsNonRoot: true
        runAsUser: 10001
        runAsGroup: 10001
        fsGroup: 10001
        seccompProfile:
          type: RuntimeDefault
      containers:
        - name: {{ .component }}
          image: {{ include "adx-core.image" $root | quote }}
          imagePullPolicy: {{ $v.image.pullPolicy }}
          args:
            {{- toYaml .args | nindent 12 }}
          ports:
            - name: http
              containerPort: {{ .port }}
              protocol: TCP
          envFrom:
            - configMapRef:
                name: {{ include "adx-core.fullname" $root }}
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
          volumeMounts:
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
      volumes:
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

{{/* The workloads as (component, resource name, values) for Services, PDBs and policies. */}}
{{- define "adx-core.workerNames" -}}
{{- list "tenants" "files" "users" | toJson }}
{{- end }}
