{{/* Contradictory values stop the render with a message that says what to change. */}}
{{- define "adx-core.validate" -}}
{{- $v := .Values }}
{{- if and (gt (int $v.operator.replicas) 1) (not $v.operator.peering.enabled) }}
{{- fail "operator.replicas > 1 needs operator.peering.enabled: without a peering every replica acts and their status writes race" }}
{{- end }}
{{- if and $v.operator.watchNamespaces $v.operator.peering.enabled }}
{{- fail "operator.watchNamespaces with operator.peering.enabled needs kopf's namespaced KopfPeering CRD, which adx-core-crds does not ship: set operator.peering.enabled=false and operator.replicas=1" }}
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
{{- range $svc := list "api" "tenants" "files" "users" }}
{{- $spec := ternary $v.api (index $v.workers $svc) (eq $svc "api") }}
{{- if and $spec.autoscaling.enabled (gt (int $spec.autoscaling.minReplicas) (int $spec.autoscaling.maxReplicas)) }}
{{- fail (printf "%s.autoscaling: minReplicas is above maxReplicas" (ternary "api" (printf "workers.%s" $svc) (eq $svc "api"))) }}
{{- end }}
{{- end }}
{{- end }}
