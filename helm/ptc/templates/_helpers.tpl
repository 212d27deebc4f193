{{/*
Names and labels shared by every template.
*/}}

{{/* The chart name, overridable with .Values.nameOverride. */}}
{{- define "ptc.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The fully qualified app name: the release name, with the chart name appended unless the release
name already contains it. Truncated to 63 characters (DNS label limit).
*/}}
{{- define "ptc.fullname" -}}
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

{{/* chart-version, for the helm.sh/chart label. */}}
{{- define "ptc.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "ptc.labels" -}}
helm.sh/chart: {{ include "ptc.chart" . }}
{{ include "ptc.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ptc
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels that select the controller's pods (immutable once installed). */}}
{{- define "ptc.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ptc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The ServiceAccount the controller runs as. */}}
{{- define "ptc.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ptc.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The container image reference: repository:tag, or repository@digest when a digest is set. */}}
{{- define "ptc.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
The namespaces ptc needs workload permissions in, as a JSON list (sorted, unique): every
rollout's namespace (its own, else defaults.namespace, else "default", as ptc resolves it) plus
.Values.watchNamespaces.
*/}}
{{- define "ptc.watchNamespaces" -}}
{{- $set := dict }}
{{- $defaultNs := (.Values.defaults | default dict).namespace | default "default" }}
{{- range .Values.rollouts }}
{{- $_ := set $set (.namespace | default $defaultNs) true }}
{{- end }}
{{- range .Values.watchNamespaces }}
{{- $_ := set $set . true }}
{{- end }}
{{- keys $set | sortAlpha | toJson }}
{{- end }}

{{/*
The namespaces where some rollout sets retention.deleteStable (its own retention, else
defaults.retention, as ptc merges them), as a JSON list: only there may ptc delete Deployments.
*/}}
{{- define "ptc.deleteNamespaces" -}}
{{- $set := dict }}
{{- $defaults := .Values.defaults | default dict }}
{{- $defaultNs := $defaults.namespace | default "default" }}
{{- $defaultDelete := ($defaults.retention | default dict).deleteStable | default false }}
{{- range .Values.rollouts }}
{{- $retention := .retention | default dict }}
{{- $delete := $defaultDelete }}
{{- if hasKey $retention "deleteStable" }}
{{- $delete = $retention.deleteStable }}
{{- end }}
{{- if $delete }}
{{- $_ := set $set (.namespace | default $defaultNs) true }}
{{- end }}
{{- end }}
{{- keys $set | sortAlpha | toJson }}
{{- end }}

{{/*
The controller's RBAC, split by where it is needed. Together these are exactly
controller.shell.kube.PERMISSIONS (tests/packaging/test_chart.py fails on any difference), one rule
per (apiGroup, resource); deployments/scale is a subresource, granted on its own.

ptc.workloadRules: in every watched namespace (or cluster-wide with rbac.clusterWide). Called
with a dict: "delete" grants deleting Deployments (only where a rollout sets deleteStable).
*/}}
{{- define "ptc.workloadRules" -}}
# list_pods; the pods informer
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
# get_service, patch_service (the flip and the state annotation); the services informer
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "patch"]
# Events recording every decision (patch: a repeat bumps the recorded one's count)
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
# the decision history with metric values, ConfigMap ptc-history-<service> (best effort);
# patch: a new leader's claim annotates it (moves its resourceVersion, fencing the old leader)
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "create", "update", "patch"]
# get_deployment; the deployments informer; patch: a new leader's claim annotation (metadata
# only: the pod template is never written); delete_deployment only for retention.deleteStable
- apiGroups: ["apps"]
  resources: ["deployments"]
  {{- if .delete }}
  verbs: ["get", "list", "watch", "patch", "delete"]
  {{- else }}
  verbs: ["get", "list", "watch", "patch"]
  {{- end }}
# scaling goes through the scale subresource only (the claim above writes metadata only)
- apiGroups: ["apps"]
  resources: ["deployments/scale"]
  verbs: ["patch"]
# the endpointslices informer (actual weight, bake start)
- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["list", "watch"]
# preflight: refuse a rollout whose Deployments an HPA scales
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["list"]
{{- end }}

{{/* ptc.leaderElectionRules: only in the release namespace, where the Lease (and the Events
about the controller itself) live. */}}
{{- define "ptc.leaderElectionRules" -}}
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "create", "update"]
# controller-wide Events (LeaderElected, ConfigRejected) are about the Lease
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- if .Values.sharding.enabled }}
# sharding: the per-shard Leases above, and the replicas' heartbeat ConfigMap (<lease>-members)
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "create", "update"]
{{- end }}
{{- end }}

{{/* The Secret holding the Alertmanager receiver's token. */}}
{{- define "ptc.alertsSecretName" -}}
{{- .Values.alertmanager.existingSecret | default (printf "%s-alerts" (include "ptc.fullname" .)) }}
{{- end }}
