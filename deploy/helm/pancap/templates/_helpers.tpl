{{/* The chart's name, and the release's full name (63 characters at most). */}}
{{- define "pancap.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pancap.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* The endpoint picker's name. */}}
{{- define "pancap.eppName" -}}
{{- printf "%s-epp" (include "pancap.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pancap.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pancap.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "pancap.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "pancap.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "pancap.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "pancap.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The server's image: the CUDA one when gpu.enabled. */}}
{{- define "pancap.image" -}}
{{- if .Values.gpu.enabled }}
{{- printf "%s:%s" .Values.gpu.image.repository (default .Chart.AppVersion .Values.gpu.image.tag) }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}
