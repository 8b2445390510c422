{{- define "cluster-agent.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "cluster-agent.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "cluster-agent.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "cluster-agent.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "cluster-agent.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cluster-agent.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "cluster-agent.labels" -}}
{{ include "cluster-agent.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tether
{{- end -}}

{{- define "cluster-agent.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "cluster-agent.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "cluster-agent.tokenSecretName" -}}
{{- if .Values.bootstrapTokenSecret -}}
{{- .Values.bootstrapTokenSecret -}}
{{- else -}}
{{- printf "%s-bootstrap" (include "cluster-agent.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* The tofu CLI configuration: the user's, or a provider_installation block for the mirrors set. */}}
{{- define "cluster-agent.tofuCliConfig" -}}
{{- $t := .Values.tofu -}}
{{- if $t.cliConfig -}}
{{- $t.cliConfig -}}
{{- else if or $t.providerMirror.volume $t.networkMirror.url -}}
# Written by the cluster-agent chart: providers come from the mirrors below only.
disable_checkpoint = true
provider_installation {
{{- if $t.providerMirror.volume }}
  filesystem_mirror {
    path = {{ $t.providerMirror.mountPath | quote }}
  }
{{- end }}
{{- if $t.networkMirror.url }}
  network_mirror {
    url = {{ $t.networkMirror.url | quote }}
  }
{{- end }}
}
{{- end -}}
{{- end -}}
