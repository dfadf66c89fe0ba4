{{/* Names: the release's full name is the chart's name when the release is named after it. */}}
{{- define "gcp.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "gcp.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "gcp.serviceAccountName" -}}
{{- default (include "gcp.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "gcp.secretName" -}}
{{- default (include "gcp.fullname" .) .Values.secret.existingSecret -}}
{{- end -}}

{{- define "gcp.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "gcp.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "gcp.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component (web, worker, beat, migrations): pass (list . "web"). */}}
{{- define "gcp.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "gcp.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* The connection settings are required: without them every pod would fall back to a SQLite
file and a filesystem broker of its own, and the processes would never see each other. */}}
{{- define "gcp.checkSecret" -}}
{{- if not .Values.secret.existingSecret -}}
{{- if not .Values.secret.databaseUrl -}}
{{- fail "secret.databaseUrl is required (a PostgreSQL URL), or name a Secret holding DATABASE_URL, REDIS_URL, SECRET_KEY and CREDENTIAL_KEYS in secret.existingSecret" -}}
{{- end -}}
{{- if not .Values.secret.redisUrl -}}
{{- fail "secret.redisUrl is required (a Redis URL), or name a Secret in secret.existingSecret" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Pod-level fields every component shares. */}}
{{- define "gcp.podCommon" -}}
automountServiceAccountToken: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
volumes:
  # The root filesystem is read-only: /tmp (beat's schedule file, Python's temporary files)
  # is the one writable place. VAR_DIR holds the static files collected at build, read-only.
  - name: tmp
    emptyDir:
      sizeLimit: 64Mi
{{- end -}}

{{/* Container-level fields every component shares: image, settings, security, /tmp. */}}
{{- define "gcp.containerCommon" -}}
image: {{ include "gcp.image" . }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
envFrom:
  - configMapRef:
      name: {{ include "gcp.fullname" . }}
  - secretRef:
      name: {{ include "gcp.secretName" . }}
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
volumeMounts:
  - name: tmp
    mountPath: /tmp
{{- end -}}

{{/* Roll the pods when the settings change. */}}
{{- define "gcp.podAnnotations" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
checksum/secret: {{ include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}
