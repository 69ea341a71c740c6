{{- define "conveyor.labels" -}}
app.kubernetes.io/part-of: conveyor
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{- define "conveyor.image" -}}
{{ .root.Values.image.registry }}/conveyor-{{ .name }}:{{ .root.Values.image.tag }}
{{- end -}}

{{- define "conveyor.s3Secret" -}}
{{ .Values.s3.existingSecret | default (printf "%s-s3" .Values.prefix) }}
{{- end -}}

{{- define "conveyor.restrictedContainer" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 10001
capabilities: {drop: [ALL]}
seccompProfile: {type: RuntimeDefault}
{{- end -}}
