{{/* The chart name, or nameOverride. */}}
{{- define "certmint.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's objects: fullnameOverride, else the release name when it
already contains the chart name (`helm install certmint ...` gives "certmint", not
"certmint-certmint"), else "<release>-<chart>".
*/}}
{{- define "certmint.fullname" -}}
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

{{- define "certmint.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "certmint.labels" -}}
helm.sh/chart: {{ include "certmint.chart" . }}
{{ include "certmint.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: controller
app.kubernetes.io/part-of: certmint
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The Deployment's selector: never changes across upgrades. */}}
{{- define "certmint.selectorLabels" -}}
app.kubernetes.io/name: {{ include "certmint.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "certmint.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "certmint.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "certmint.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* Where ClusterIssuers read their CA Secrets: clusterResourceNamespace, else the release namespace. */}}
{{- define "certmint.clusterResourceNamespace" -}}
{{- .Values.clusterResourceNamespace | default .Release.Namespace }}
{{- end }}

{{/* The ServiceAccount as an RBAC subject. */}}
{{- define "certmint.subject" -}}
- kind: ServiceAccount
  name: {{ include "certmint.serviceAccountName" . }}
  namespace: {{ .Release.Namespace }}
{{- end }}

{{/*
Cross-field checks the JSON schema cannot phrase clearly; called from the Deployment.
*/}}
{{- define "certmint.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail (printf "replicaCount is %d but leaderElection.enabled is false: every replica would issue certificates on its own. Enable leader election or use one replica." (int .Values.replicaCount)) }}
{{- end }}
{{- end }}

{{- define "certmint.leaseName" -}}
{{- .Values.leaderElection.id | default (include "certmint.fullname" .) }}
{{- end }}
