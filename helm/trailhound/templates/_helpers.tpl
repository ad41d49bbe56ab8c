{{- define "trailhound.fullname" -}}
{{- printf "%s-trailhound" .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- end -}}

{{- define "trailhound.labels" -}}
app.kubernetes.io/name: trailhound
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "trailhound.natsUrl" -}}
{{- if .Values.nats.url -}}
{{ .Values.nats.url }}
{{- else -}}
nats://{{ include "trailhound.fullname" . }}-nats:4222
{{- end -}}
{{- end -}}

{{/* Environment every service shares. */}}
{{- define "trailhound.env" -}}
- name: TRAILHOUND_CONFIG
  value: /etc/trailhound/services.toml
- name: TRAILHOUND_HTTP_ADDR
  value: "0.0.0.0:{{ .Values.httpPort }}"
{{- if .Values.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .Values.otlpEndpoint | quote }}
{{- end }}
{{- end -}}

{{- define "trailhound.probes" -}}
ports:
  - name: http
    containerPort: {{ .Values.httpPort }}
  {{- with .extraPorts }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
livenessProbe:
  httpGet: { path: /healthz, port: http }
readinessProbe:
  httpGet: { path: /readyz, port: http }
{{- end -}}
