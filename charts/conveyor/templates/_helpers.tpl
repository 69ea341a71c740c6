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

{{/* The S3 endpoint's CA (s3.caSecret, key ca.crt) and the predictors' data-plane token
(predictor.auth.tokenSecret, key token), for a container that reaches the store or the predictors:
env, volumeMounts and volumes entries (each empty when the value is not set). */}}
{{- define "conveyor.securityEnv" -}}
{{- if .Values.s3.caSecret }}
- {name: AWS_CA_BUNDLE, value: /etc/conveyor/s3-ca/ca.crt}
{{- end }}
{{- if .Values.predictor.auth.tokenSecret }}
- {name: CONVEYOR_INFERENCE_TOKEN_FILE, value: /etc/conveyor/inference-token/token}
{{- end }}
{{- end -}}

{{- define "conveyor.securityMounts" -}}
{{- if .Values.s3.caSecret }}
- {name: s3-ca, mountPath: /etc/conveyor/s3-ca, readOnly: true}
{{- end }}
{{- if .Values.predictor.auth.tokenSecret }}
- {name: inference-token, mountPath: /etc/conveyor/inference-token, readOnly: true}
{{- end }}
{{- end -}}

{{- define "conveyor.securityVolumes" -}}
{{- if .Values.s3.caSecret }}
- name: s3-ca
  secret: {secretName: {{ .Values.s3.caSecret | quote }}, items: [{key: ca.crt, path: ca.crt}]}
{{- end }}
{{- if .Values.predictor.auth.tokenSecret }}
- name: inference-token
  secret: {secretName: {{ .Values.predictor.auth.tokenSecret | quote }}, items: [{key: token, path: token}]}
{{- end }}
{{- end -}}
