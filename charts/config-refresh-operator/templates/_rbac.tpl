{{/*
The rules the operator uses in a namespace it watches, and nothing more:
- configroutes: kopf watches them (list/watch), reads one (get) and patches its finalizer and progress
  annotations (patch); status is written on /status.
- configrefreshes: the SQS consumer creates one per parameter version, kopf watches and patches them, the
  retention sweep deletes finished ones; progress goes to /status.
- events: kopf posts Kubernetes Events about routes and refreshes (create only: kopf never updates them).
- pods: only with podSync, which watches the pods a route selects (list/watch; never get, patch or delete).
- kopfpeerings: only with peering (replicaCount > 1) in namespaced mode; kopf touches its peering object.
*/}}
{{- define "config-refresh-operator.namespacedRules" -}}
- apiGroups: [configrefresh.io]
  resources: [configroutes]
  verbs: [get, list, watch, patch]
- apiGroups: [configrefresh.io]
  resources: [configroutes/status]
  verbs: [patch]
- apiGroups: [configrefresh.io]
  resources: [configrefreshes]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [configrefresh.io]
  resources: [configrefreshes/status]
  verbs: [patch]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- if .Values.podSync.enabled }}
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch]
{{- end }}
{{- end }}

{{/*
Cluster-scoped rules kopf itself needs:
- customresourcedefinitions list/watch: kopf's resource observer (notices the CRDs being (re)installed).
- namespaces list/watch: only when not cluster-wide; kopf's namespace observer resolves the --namespace
  list against existing namespaces (cluster-wide it does not look at namespaces at all).
- clusterkopfpeerings: only with peering in cluster-wide mode.
*/}}
{{- define "config-refresh-operator.clusterRules" -}}
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
{{- if not .Values.watch.clusterWide }}
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
{{- end }}
{{- if and .Values.watch.clusterWide (include "config-refresh-operator.peering" .) }}
- apiGroups: [kopf.dev]
  resources: [clusterkopfpeerings]
  verbs: [get, list, watch, patch]
{{- end }}
{{- end }}
