{{/* The chart's name, overridable (nameOverride). */}}
{{- define "conveyor.name" -}}
{{ .Values.nameOverride | default .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{/* Every object's name starts with this: <release>-<chart> (the release alone when it already
     contains the chart's name, e.g. `helm install conveyor`), or fullnameOverride. Two releases in
     one namespace never share a name. Kept to 40 characters: the longest suffix is 23. */}}
{{- define "conveyor.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{ .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else -}}
{{- $name := include "conveyor.name" . -}}
{{- if contains $name .Release.Name -}}
{{ .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else -}}
{{ printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "conveyor.chart" -}}
{{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{/* What selects this release's pods: stable across upgrades (no version in it). */}}
{{- define "conveyor.selectorLabels" -}}
app.kubernetes.io/name: {{ include "conveyor.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The standard labels of every object (Kubernetes' recommended set, Helm's chart label). */}}
{{- define "conveyor.labels" -}}
{{ include "conveyor.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: conveyor
helm.sh/chart: {{ include "conveyor.chart" . }}
{{- end -}}

{{- define "conveyor.image" -}}
{{ .root.Values.image.registry }}/conveyor-{{ .name }}:{{ .root.Values.image.tag }}
{{- end -}}

{{- define "conveyor.s3Secret" -}}
{{ .Values.s3.existingSecret | default (printf "%s-s3" (include "conveyor.fullname" .)) }}
{{- end -}}

{{- define "conveyor.restrictedContainer" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 10001
capabilities: {drop: [ALL]}
seccompProfile: {type: RuntimeDefault}
{{- end -}}
