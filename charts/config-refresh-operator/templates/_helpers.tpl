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
