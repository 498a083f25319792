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

{{/* Fail early on an incomplete refresh-auth setup (the service would refuse to start anyway). */}}
{{- define "config-service.validateAuth" -}}
{{- $auth := .Values.refreshAuth }}
{{- if not (has $auth.mode (list "serviceAccountToken" "token" "mtls" "none")) }}
{{- fail (printf "refreshAuth.mode must be serviceAccountToken, token, mtls or none, got %q" $auth.mode) }}
{{- end }}
{{- if and (eq $auth.mode "token") (not $auth.token.secretName) }}
{{- fail "refreshAuth.mode=token needs refreshAuth.token.secretName" }}
{{- end }}
{{- if and (eq $auth.mode "mtls") (or (not $auth.tls.secretName) (not $auth.mtls.allowedIdentities)) }}
{{- fail "refreshAuth.mode=mtls needs refreshAuth.tls.secretName and refreshAuth.mtls.allowedIdentities" }}
{{- end }}
{{- if and (eq $auth.mode "serviceAccountToken") (not $auth.serviceAccountToken.allowedUsers) }}
{{- fail "refreshAuth.mode=serviceAccountToken needs refreshAuth.serviceAccountToken.allowedUsers" }}
{{- end }}
{{- end }}
