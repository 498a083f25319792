{{/* Standard helpers: names truncated to 63 characters, app.kubernetes.io/* labels. */}}

{{- define "config-refresh-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "config-refresh-operator.fullname" -}}
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

{{- define "config-refresh-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "config-refresh-operator.labels" -}}
helm.sh/chart: {{ include "config-refresh-operator.chart" . }}
{{ include "config-refresh-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: config-refresh
{{- end }}

{{- define "config-refresh-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "config-refresh-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "config-refresh-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "config-refresh-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image reference: digest wins over tag; the tag defaults to the chart's appVersion. */}}
{{- define "config-refresh-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Peering is on exactly when more than one replica runs (one active operator, the rest on standby). */}}
{{- define "config-refresh-operator.peering" -}}
{{- if gt (int .Values.replicaCount) 1 }}true{{ end }}
{{- end }}

{{- define "config-refresh-operator.peeringName" -}}
{{- default (include "config-refresh-operator.fullname" .) .Values.peering.name }}
{{- end }}

{{/* The namespaces watched when not cluster-wide, as a JSON list (default: the release namespace). */}}
{{- define "config-refresh-operator.watchNamespaces" -}}
{{- if .Values.watch.namespaces }}
{{- .Values.watch.namespaces | uniq | toJson }}
{{- else }}
{{- list .Release.Namespace | toJson }}
{{- end }}
{{- end }}

{{/* The operator's command line: scope, peering and the kopf liveness endpoint. */}}
{{- define "config-refresh-operator.args" -}}
{{- $args := list }}
{{- if include "config-refresh-operator.peering" . }}
{{- $args = concat $args (list "--peering" (include "config-refresh-operator.peeringName" .)) }}
{{- else }}
{{- $args = append $args "--standalone" }}
{{- end }}
{{- if .Values.watch.clusterWide }}
{{- $args = append $args "--all-namespaces" }}
{{- else }}
{{- range (include "config-refresh-operator.watchNamespaces" . | fromJsonArray) }}
{{- $args = concat $args (list "--namespace" .) }}
{{- end }}
{{- end }}
{{- $args = concat $args (list "--liveness" (printf "http://0.0.0.0:%d/healthz" (int .Values.liveness.port))) }}
{{- $args = concat $args (list "--log-format" .Values.logFormat) }}
{{- $args = concat $args .Values.extraArgs }}
{{- toJson $args }}
{{- end }}

{{/* Sidecar injection (issue 21): names, the injected image, and the webhook's TLS material. */}}
{{- define "config-refresh-operator.webhookName" -}}
{{- printf "%s-webhook" (include "config-refresh-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "config-refresh-operator.webhookTlsSecretName" -}}
{{- default (printf "%s-tls" (include "config-refresh-operator.webhookName" .)) .Values.injection.tls.secretName }}
{{- end }}

{{- define "config-refresh-operator.sidecarImage" -}}
{{- $image := .Values.injection.image }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository (default .Chart.AppVersion $image.tag) }}
{{- end }}
{{- end }}

{{/* The sidecar template the operator reads (refresh_operator/injection/template.py), as JSON. */}}
{{- define "config-refresh-operator.sidecarJson" -}}
{{- $s := .Values.injection.sidecar }}
{{- $users := $s.refreshAllowedUsers }}
{{- if not $users }}
{{- $users = list (printf "system:serviceaccount:%s:%s" .Release.Namespace (include "config-refresh-operator.serviceAccountName" .)) }}
{{- end }}
{{- $template := dict
  "image" (include "config-refresh-operator.sidecarImage" .)
  "imagePullPolicy" .Values.injection.image.pullPolicy
  "nativeSidecar" $s.nativeSidecar
  "awsRegion" $s.awsRegion
  "awsEndpointUrl" $s.awsEndpointUrl
  "ttlSeconds" (int $s.ttlSeconds)
  "graceSeconds" (int $s.graceSeconds)
  "logLevel" $s.logLevel
  "configPort" (int $s.configPort)
  "metricsPort" (int $s.metricsPort)
  "healthPort" (int $s.healthPort)
  "httpPort" (int $s.httpPort)
  "filesDir" $s.filesDir
  "secureFilesDir" $s.secureFilesDir
  "filesSizeLimit" $s.filesSizeLimit
  "secureSizeLimit" $s.secureSizeLimit
  "refreshAllowedUsers" $users
  "extraEnv" $s.extraEnv
  "resources" $s.resources
  "securityContext" $s.securityContext
  "readinessProbe" $s.readinessProbe
  "livenessProbe" $s.livenessProbe
  "startupProbe" $s.startupProbe }}
{{- toPrettyJson $template }}
{{- end }}

{{/* The webhook's CA (base64 PEM) and, when the chart generates them, its certificate and key: generated
on the first install and read back with lookup on upgrades, as the config-service chart does for its TLS. */}}
{{- define "config-refresh-operator.webhookTls" -}}
{{- if not (hasKey .Values "__webhookTls") }}
{{- $material := dict "ca" .Values.injection.tls.caBundle "crt" "" "key" "" }}
{{- if not .Values.injection.tls.secretName }}
{{- $name := include "config-refresh-operator.webhookTlsSecretName" . }}
{{- $existing := lookup "v1" "Secret" .Release.Namespace $name }}
{{- $data := dict }}
{{- if $existing }}{{ $data = (default dict $existing.data) }}{{ end }}
{{- if and (index $data "tls.crt") (index $data "tls.key") (index $data "ca.crt") }}
{{- $_ := set $material "ca" (index $data "ca.crt") }}
{{- $_ := set $material "crt" (index $data "tls.crt") }}
{{- $_ := set $material "key" (index $data "tls.key") }}
{{- else }}
{{- $service := include "config-refresh-operator.webhookName" . }}
{{- $days := int .Values.injection.tls.validityDays }}
{{- $ca := genCA (printf "%s-ca" $service) $days }}
{{- $sans := list (printf "%s.%s.svc" $service .Release.Namespace) (printf "%s.%s.svc.cluster.local" $service .Release.Namespace) }}
{{- $cert := genSignedCert (printf "%s.%s.svc" $service .Release.Namespace) nil $sans $days $ca }}
{{- $_ := set $material "ca" ($ca.Cert | b64enc) }}
{{- $_ := set $material "crt" ($cert.Cert | b64enc) }}
{{- $_ := set $material "key" ($cert.Key | b64enc) }}
{{- end }}
{{- end }}
{{- $_ := set .Values "__webhookTls" $material }}
{{- end }}
{{- end }}
