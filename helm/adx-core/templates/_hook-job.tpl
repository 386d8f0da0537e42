{{/*
A Job run as a pre-install and pre-upgrade hook: the migration (migrate-job.yaml) and the
Temporal setup (temporal-setup-job.yaml).

Such a hook runs before any object of the release exists: not the ConfigMap, so its settings go
inline, from the same adx-core.configData as the ConfigMap; not the chart's ServiceAccounts, so
it runs under the namespace's default one, with no token (it needs no Kubernetes API); not the
storage claim, so it mounts only /tmp, plus the Temporal TLS Secret when it talks to Temporal.
Settings validation needs the whole environment (production refuses a missing ADX_JWT_SECRET or
ADX_CODEC_KEYS, a storage provider its credentials), so it gets the secrets of adx-core.secretEnvs.
It is replaced on the next attempt and deleted when it succeeds; a failed one stays to be read.

Args: root; component (the label, the container's name and the Job name's suffix); weight (the
hook weight: lower runs first); args (the container's args); spec (backoffLimit,
activeDeadlineSeconds, resources); database (bool: whether it gets ADX_DATABASE_URL); env (more
env entries, a list of maps); temporal (bool: it connects to Temporal, so it mounts the TLS
Secret when temporal.tls.enabled).
*/}}
{{- define "adx-core.preInstallJob" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
{{- $labels := dict "root" $root "component" .component }}
{{- $env := list }}
{{- range $name, $value := include "adx-core.configData" $root | fromJson }}
{{- $env = append $env (dict "name" $name "value" $value) }}
{{- end }}
{{- $tls := and .temporal $v.temporal.tls.enabled }}
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ include "adx-core.hookJobName" . }}
  labels:
    {{- include "adx-core.labels" $labels | nindent 4 }}
  annotations:
    helm.sh/hook: pre-install,pre-upgrade
    helm.sh/hook-weight: {{ .weight | quote }}
    helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
spec:
  backoffLimit: {{ .spec.backoffLimit }}
  activeDeadlineSeconds: {{ .spec.activeDeadlineSeconds }}
  template:
    metadata:
      labels:
        {{- include "adx-core.labels" $labels | nindent 8 }}
        {{- with $v.podDefaults.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with $v.podDefaults.podAnnotations }}
      annotations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    spec:
      restartPolicy: Never
      automountServiceAccountToken: false
      {{- if $v.imagePullSecrets }}
      {{- include "adx-core.imagePullSecrets" . | nindent 6 }}
      {{- end }}
      securityContext:
        {{- include "adx-core.podSecurityContext" . | nindent 8 }}
      containers:
        - name: {{ .component }}
          image: {{ include "adx-core.image" $root | quote }}
          imagePullPolicy: {{ $v.image.pullPolicy }}
          args:
            {{- toYaml .args | nindent 12 }}
          env:
            {{- toYaml $env | nindent 12 }}
            {{- include "adx-core.secretEnvs" (dict "root" $root "database" .database) | trim | nindent 12 }}
            {{- with .env }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          resources:
            {{- toYaml .spec.resources | nindent 12 }}
          securityContext:
            {{- include "adx-core.containerSecurityContext" . | nindent 12 }}
          volumeMounts:
            {{- include "adx-core.tmpVolumeMount" . | nindent 12 }}
            {{- if $tls }}
            {{- include "adx-core.temporalTlsVolumeMount" . | nindent 12 }}
            {{- end }}
      volumes:
        {{- include "adx-core.tmpVolume" (dict "root" $root) | nindent 8 }}
        {{- if $tls }}
        {{- include "adx-core.temporalTlsVolume" . | nindent 8 }}
        {{- end }}
      {{- with $v.podDefaults.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.podDefaults.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end }}
