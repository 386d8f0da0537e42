{{/* Contradictory values stop the render with a message that says what to change. */}}
{{- define "adx-core.validate" -}}
{{- $v := .Values }}
{{- include "adx-core.validateRequired" . }}
{{- if and (eq $v.scanner.kind "eicar") (eq $v.environment "production") }}
{{- fail "scanner.kind=eicar with environment=production: the app refuses ADX_SCANNER=eicar in production at start (it knows only the EICAR test string), so no pod would start; set scanner.kind=clamd and scanner.clamd.address" }}
{{- end }}
{{- if and (gt (int $v.operator.replicas) 1) (not $v.operator.peering.enabled) }}
{{- fail "operator.replicas > 1 needs operator.peering.enabled: without a peering every replica acts and their status writes race" }}
{{- end }}
{{- if and $v.api.ingress.enabled (not $v.api.ingress.host) }}
{{- fail "api.ingress.enabled needs api.ingress.host" }}
{{- end }}
{{- if and (eq $v.storage.provider "s3") (not $v.storage.s3.bucket) }}
{{- fail "storage.provider=s3 needs storage.s3.bucket" }}
{{- end }}
{{- if and (eq $v.storage.provider "gcs") (not $v.storage.gcs.bucket) }}
{{- fail "storage.provider=gcs needs storage.gcs.bucket" }}
{{- end }}
{{- if and (eq $v.storage.provider "azure") (not $v.storage.azure.container) }}
{{- fail "storage.provider=azure needs storage.azure.container" }}
{{- end }}
{{- if and (not $v.auth.jwt.secret.enabled) (not $v.auth.jwt.jwksUrl) }}
{{- fail "auth: neither auth.jwt.secret.enabled nor auth.jwt.jwksUrl is set, so the API could verify no token" }}
{{- end }}
{{- if and (eq $v.environment "production") (not $v.auth.jwt.secret.enabled) }}
{{- fail "environment=production needs auth.jwt.secret.enabled: ADX signs its own tokens (tenant switches, stream tokens) with ADX_JWT_SECRET" }}
{{- end }}
{{- if and $v.temporal.tls.enabled (not $v.temporal.tls.existingSecret) }}
{{- fail "temporal.tls.enabled needs temporal.tls.existingSecret, the Secret with the certificate files" }}
{{- end }}
{{- if and $v.temporal.tls.enabled (not (eq (empty $v.temporal.tls.certKey) (empty $v.temporal.tls.keyKey))) }}
{{- fail "temporal.tls.certKey and temporal.tls.keyKey go together: set both for mTLS, or neither" }}
{{- end }}
{{- if and (not $v.secrets.existingSecret) (or (not $v.database.url.existingSecret) (not $v.codec.keys.existingSecret)) }}
{{- fail "secrets.existingSecret is empty, so every secret reference must name its own existingSecret (database.url, codec.keys, ...)" }}
{{- end }}
{{- range $svc := fromJsonArray (include "adx-core.workerNames" .) }}
{{- $w := index $v.workers $svc }}
{{- if hasKey $w "buildId" }}
{{- fail (printf "workers.%s.buildId was replaced by workers.%s.versions[].buildId and currentBuildId" $svc $svc) }}
{{- end }}
{{- if hasKey $w "replicas" }}
{{- fail (printf "workers.%s.replicas was replaced by workers.%s.versions[].replicas" $svc $svc) }}
{{- end }}
{{- $versions := fromJsonArray (include "adx-core.workerVersions" (dict "root" $ "svc" $svc)) }}
{{- $names := dict }}
{{- range $i, $version := $versions }}
{{- /* An explicit build id is checked by the schema; one taken from an image tag only here. */}}
{{- if not (regexMatch "^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$" $version.buildId) }}
{{- fail (printf "workers.%s.versions[%d]: the image tag %q is not a valid worker build id (letters, digits, '.', '_', '-', at most 63): set buildId" $svc $i $version.buildId) }}
{{- end }}
{{- /* Resource names fold case, '.' and '_', so "V1.0" and "v1-0" would share a Deployment. */}}
{{- with get $names $version.name }}
{{- fail (printf "workers.%s.versions: build ids %q and %q name the same Deployment; each version needs its own build id" $svc . $version.buildId) }}
{{- end }}
{{- $_ := set $names $version.name $version.buildId }}
{{- end }}
{{- if and (gt (len $versions) 1) (not $w.currentBuildId) }}
{{- fail (printf "workers.%s.currentBuildId is required when workers.%s.versions holds more than one version" $svc $svc) }}
{{- end }}
{{- if not (include "adx-core.currentWorkerVersion" (dict "root" $ "svc" $svc) | fromJson) }}
{{- fail (printf "workers.%s.currentBuildId %q is not among workers.%s.versions[].buildId" $svc $w.currentBuildId $svc) }}
{{- end }}
{{- end }}
{{- $previous := 0 }}
{{- range $v.rollout.progressive.steps }}
{{- if le (int .) $previous }}
{{- fail "rollout.progressive.steps must increase: each step routes more executions than the one before" }}
{{- end }}
{{- $previous = int . }}
{{- end }}
{{- $needed := include "adx-core.rolloutMinimumSeconds" . | int }}
{{- if lt (int $v.rollout.job.activeDeadlineSeconds) $needed }}
{{- fail (printf "rollout.job.activeDeadlineSeconds (%d) is shorter than the pollers' wait plus every progressive step (%d)" (int $v.rollout.job.activeDeadlineSeconds) $needed) }}
{{- end }}
{{- range $svc := list "api" "tenants" "files" "users" }}
{{- $spec := ternary $v.api (index $v.workers $svc) (eq $svc "api") }}
{{- if and $spec.autoscaling.enabled (gt (int $spec.autoscaling.minReplicas) (int $spec.autoscaling.maxReplicas)) }}
{{- fail (printf "%s.autoscaling: minReplicas is above maxReplicas" (ternary "api" (printf "workers.%s" $svc) (eq $svc "api"))) }}
{{- end }}
{{- end }}
{{- end }}

{{/* The least a promote Job runs: the pollers' wait, then (Progressive) every step. */}}
{{- define "adx-core.rolloutMinimumSeconds" -}}
{{- $r := .Values.rollout }}
{{- $steps := 0 }}
{{- if eq $r.strategy "Progressive" }}
{{- $steps = mul (len $r.progressive.steps) $r.progressive.stepSeconds }}
{{- end }}
{{- add $r.pollersTimeoutSeconds $steps }}
{{- end }}

{{/*
The site values without a usable default, checked together so that a bare install names them
all at once: without a mail server (or webhook) every worker exits at start, and without a
clamd every upload fails its scan, so an install would only end in broken pods.
*/}}
{{- define "adx-core.validateRequired" -}}
{{- $n := .Values.notifications }}
{{- $missing := list }}
{{- if and (eq $n.provider "smtp") (not $n.smtp.host) }}
{{- $missing = append $missing "notifications.smtp.host (the SMTP server the workers send mail through; or set notifications.provider=webhook and notifications.webhook.url)" }}
{{- end }}
{{- if and (eq $n.provider "webhook") (not $n.webhook.url) }}
{{- $missing = append $missing "notifications.webhook.url (where notifications.provider=webhook POSTs each notification)" }}
{{- end }}
{{- if and (eq .Values.scanner.kind "clamd") (not .Values.scanner.clamd.address) }}
{{- $missing = append $missing "scanner.clamd.address (host:port or unix:/path of the clamd that scans every upload; or scanner.kind=eicar outside production)" }}
{{- end }}
{{- with $missing }}
{{- fail (printf "required values are not set, and without them the workers cannot send mail or scan uploads: %s. See Required values in the chart's README" (join "; " .)) }}
{{- end }}
{{- end }}
