{{/* Standard helpers: names truncated to 63 characters, app.kubernetes.io/* labels. */}}

{{- define "config-service.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "config-service.fullname" -}}
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

{{- define "config-service.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "config-service.labels" -}}
helm.sh/chart: {{ include "config-service.chart" . }}
{{ include "config-service.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: config-refresh
{{- end }}

{{- define "config-service.selectorLabels" -}}
app.kubernetes.io/name: {{ include "config-service.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: service
{{- end }}

{{- define "config-service.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "config-service.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image reference: digest wins over tag; the tag defaults to the chart's appVersion. */}}
{{- define "config-service.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Whether the refresh and config ports serve TLS ("true" or empty). */}}
{{- define "config-service.tls" -}}
{{- if not .Values.tls.insecurePlaintext }}true{{ end }}
{{- end }}

{{/* RefreshService's effective mode: a bearer-token mode becomes "none" on plaintext unless tokens in
clear were asked for (insecurePlaintextTokens). */}}
{{- define "config-service.refreshMode" -}}
{{- $mode := .Values.refreshAuth.mode }}
{{- if and .Values.tls.insecurePlaintext (not .Values.tls.insecurePlaintextTokens) (has $mode (list "serviceAccountToken" "token")) }}none{{ else }}{{ $mode }}{{ end }}
{{- end }}

{{/* What the chart's route carries: configRoute.payload, or value with TLS and invalidate without. */}}
{{- define "config-service.payload" -}}
{{- if .Values.configRoute.payload }}{{ .Values.configRoute.payload }}{{ else if .Values.tls.insecurePlaintext }}invalidate{{ else }}value{{ end }}
{{- end }}

{{/* The token audience of this service: one per Cloud Map service. */}}
{{- define "config-service.audience" -}}
{{- $cloudMap := .Values.configRoute.cloudMap }}
{{- default (printf "configrefresh.io/%s/%s" $cloudMap.namespace $cloudMap.service) .Values.refreshAuth.serviceAccountToken.audience }}
{{- end }}

{{/* Whether the service calls TokenReview (for the operator's or the applications' tokens). */}}
{{- define "config-service.tokenReview" -}}
{{- if or (eq (include "config-service.refreshMode" .) "serviceAccountToken") (eq .Values.configApi.mode "serviceAccountToken") }}true{{ end }}
{{- end }}

{{/* Groups allowed to call ConfigService with ServiceAccount tokens. */}}
{{- define "config-service.configGroups" -}}
{{- $sat := .Values.configApi.serviceAccountToken }}
{{- if or $sat.allowedGroups $sat.allowedUsers }}{{ join "," $sat.allowedGroups }}{{ else }}system:serviceaccounts:{{ .Release.Namespace }}{{ end }}
{{- end }}

{{- define "config-service.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "config-service.fullname" .)) .Values.tls.secretName }}
{{- end }}

{{- define "config-service.serverName" -}}
{{- default (printf "%s.%s.svc" (include "config-service.fullname" .) .Release.Namespace) .Values.tls.serverName }}
{{- end }}

{{/* Whether cert-manager issues the serving certificate ("true" or empty). */}}
{{- define "config-service.certManager" -}}
{{- if and (include "config-service.tls" .) (not .Values.tls.secretName) .Values.tls.certManager.enabled }}true{{ end }}
{{- end }}

{{/* Whether the chart generates the CA and serving certificate itself ("true" or empty). */}}
{{- define "config-service.generatedTls" -}}
{{- if and (include "config-service.tls" .) (not .Values.tls.secretName) (not .Values.tls.certManager.enabled) }}true{{ end }}
{{- end }}

{{/* The TLS material of this render, computed once and shared by the Secret and the ConfigRoute (both
must carry the same CA): base64 `ca`, `crt`, `key`. Generated with genCA/genSignedCert unless the Secret
exists already (lookup), which keeps it across upgrades; for a user's or cert-manager's Secret only `ca`
is known, read from its ca.crt when the Secret exists at render time. */}}
{{- define "config-service.tlsMaterial" -}}
{{- if not (hasKey .Values "__tlsMaterial") }}
{{- $material := dict "ca" "" "crt" "" "key" "" }}
{{- $name := include "config-service.tlsSecretName" . }}
{{- if include "config-service.tls" . }}
{{- $existing := lookup "v1" "Secret" .Release.Namespace $name }}
{{- $data := dict }}
{{- if $existing }}{{ $data = (default dict $existing.data) }}{{ end }}
{{- if include "config-service.generatedTls" . }}
{{- if and (index $data "tls.crt") (index $data "tls.key") (index $data "ca.crt") }}
{{- $_ := set $material "ca" (index $data "ca.crt") }}
{{- $_ := set $material "crt" (index $data "tls.crt") }}
{{- $_ := set $material "key" (index $data "tls.key") }}
{{- else }}
{{- $fullname := include "config-service.fullname" . }}
{{- $days := int .Values.tls.validityDays }}
{{- $ca := genCA (printf "%s-ca" $fullname) $days }}
{{- $sans := list (printf "%s.%s.svc" $fullname .Release.Namespace) (printf "%s.%s.svc.cluster.local" $fullname .Release.Namespace) }}
{{- if .Values.tls.serverName }}{{ $sans = append $sans .Values.tls.serverName }}{{ end }}
{{- $cert := genSignedCert (printf "%s.%s.svc" $fullname .Release.Namespace) nil $sans $days $ca }}
{{- $_ := set $material "ca" ($ca.Cert | b64enc) }}
{{- $_ := set $material "crt" ($cert.Cert | b64enc) }}
{{- $_ := set $material "key" ($cert.Key | b64enc) }}
{{- end }}
{{- else }}
{{- $_ := set $material "ca" (default "" (index $data "ca.crt")) }}
{{- end }}
{{- end }}
{{- $_ := set .Values "__tlsMaterial" $material }}
{{- end }}
{{- end }}

{{/* Fail early on an incomplete or unsafe auth setup (the service would refuse to start anyway). */}}
{{- define "config-service.validateAuth" -}}
{{- $auth := .Values.refreshAuth }}
{{- $config := .Values.configApi }}
{{- $plaintext := .Values.tls.insecurePlaintext }}
{{- if not (has $auth.mode (list "serviceAccountToken" "token" "mtls" "none")) }}
{{- fail (printf "refreshAuth.mode must be serviceAccountToken, token, mtls or none, got %q" $auth.mode) }}
{{- end }}
{{- if and (eq $auth.mode "token") (not $auth.token.secretName) }}
{{- fail "refreshAuth.mode=token needs refreshAuth.token.secretName" }}
{{- end }}
{{- if and (eq $auth.mode "mtls") (or (not $auth.mtls.clientCaSecretName) (not $auth.mtls.allowedIdentities)) }}
{{- fail "refreshAuth.mode=mtls needs refreshAuth.mtls.clientCaSecretName and refreshAuth.mtls.allowedIdentities" }}
{{- end }}
{{- if and (eq $auth.mode "mtls") $plaintext }}
{{- fail "refreshAuth.mode=mtls needs TLS: unset tls.insecurePlaintext" }}
{{- end }}
{{- if and (eq $auth.mode "serviceAccountToken") (not $auth.serviceAccountToken.allowedUsers) }}
{{- fail "refreshAuth.mode=serviceAccountToken needs refreshAuth.serviceAccountToken.allowedUsers" }}
{{- end }}
{{- if and (eq $config.mode "token") (not $config.token.secretName) }}
{{- fail "configApi.mode=token needs configApi.token.secretName" }}
{{- end }}
{{- if and (eq $config.mode "mtls") (or (not $config.mtls.clientCaSecretName) (not $config.mtls.allowedIdentities)) }}
{{- fail "configApi.mode=mtls needs configApi.mtls.clientCaSecretName and configApi.mtls.allowedIdentities" }}
{{- end }}
{{- if and $plaintext (eq $config.mode "mtls") }}
{{- fail "configApi.mode=mtls needs TLS: unset tls.insecurePlaintext" }}
{{- end }}
{{- if and $plaintext (has $config.mode (list "serviceAccountToken" "token")) (not .Values.tls.insecurePlaintextTokens) }}
{{- fail (printf "configApi.mode=%s sends bearer tokens, which tls.insecurePlaintext would carry in clear: use configApi.mode=loopback, or also set tls.insecurePlaintextTokens=true" $config.mode) }}
{{- end }}
{{- end }}
