{{/* Names, labels, images, secrets and shared pod settings of the Videoflix chart. */}}

{{- define "videoflix.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name, truncated at 63 characters (DNS-1123 label limit). */}}
{{- define "videoflix.fullname" -}}
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

{{/* Component object name: <fullname>-<component>; the fullname is cut so the suffix always fits. */}}
{{- define "videoflix.componentName" -}}
{{- $root := index . 0 }}{{- $component := index . 1 -}}
{{- printf "%s-%s" (include "videoflix.fullname" $root | trunc (int (sub 62 (len $component))) | trimSuffix "-") $component }}
{{- end }}

{{- define "videoflix.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Standard labels; call with (list $ "component"). */}}
{{- define "videoflix.labels" -}}
{{- $root := index . 0 }}{{- $component := index . 1 -}}
helm.sh/chart: {{ include "videoflix.chart" $root }}
{{ include "videoflix.selectorLabels" (list $root $component) }}
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
app.kubernetes.io/part-of: videoflix
{{- with $root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "videoflix.selectorLabels" -}}
{{- $root := index . 0 }}{{- $component := index . 1 -}}
app.kubernetes.io/name: {{ include "videoflix.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ $component }}
{{- end }}

{{/* Namespace of VideoTranscode objects and transcoder Jobs. */}}
{{- define "videoflix.transcodeNamespace" -}}
{{- default .Release.Namespace .Values.config.transcodeNamespace }}
{{- end }}

{{/* image reference; call with (list $ .Values.api.image). */}}
{{- define "videoflix.image" -}}
{{- $root := index . 0 }}{{- $image := index . 1 -}}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) }}
{{- end }}

{{- define "videoflix.apiServiceAccountName" -}}
{{- if .Values.api.serviceAccount.create }}
{{- default (include "videoflix.componentName" (list . "api")) .Values.api.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.api.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "videoflix.operatorServiceAccountName" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (include "videoflix.componentName" (list . "operator")) .Values.operator.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "videoflix.transcoderServiceAccountName" -}}
{{- if .Values.transcoder.serviceAccount.create }}
{{- default (include "videoflix.componentName" (list . "transcoder")) .Values.transcoder.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.transcoder.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Name of the chart-managed Secret that holds the secret values given inline. */}}
{{- define "videoflix.secretName" -}}
{{- include "videoflix.fullname" . }}
{{- end }}

{{/*
Secret references. No secret has a default: a missing one stops the install with a message that says
which value to set, instead of a pod that starts with a guessable key.
*/}}
{{- define "videoflix.databaseUrlRef" -}}
{{- $db := .Values.config.database }}
{{- if $db.existingSecret.name }}
name: {{ $db.existingSecret.name }}
key: {{ $db.existingSecret.key }}
{{- else if $db.url }}
name: {{ include "videoflix.secretName" . }}
key: database-url
{{- else }}
{{- fail "videoflix: a database is required: set config.database.url or config.database.existingSecret.name" }}
{{- end }}
{{- end }}

{{- define "videoflix.jwtSecretRef" -}}
{{- $jwt := .Values.config.jwt }}
{{- if $jwt.existingSecret.name }}
name: {{ $jwt.existingSecret.name }}
key: {{ $jwt.existingSecret.key }}
{{- else if $jwt.secret }}
{{- if lt (len $jwt.secret) 32 }}
{{- fail "videoflix: config.jwt.secret must be at least 32 characters (e.g. `openssl rand -hex 32`)" }}
{{- end }}
name: {{ include "videoflix.secretName" . }}
key: jwt-secret
{{- else }}
{{- fail "videoflix: a token signing key is required: set config.jwt.secret (e.g. `openssl rand -hex 32`) or config.jwt.existingSecret.name" }}
{{- end }}
{{- end }}

{{/*
Name of the Secret with the S3 settings under their env names (VIDEOFLIX_S3_*): transcoder Job pods
load it whole with envFrom, the API and the operator pick the keys from it.
*/}}
{{- define "videoflix.s3SecretName" -}}
{{- $s3 := .Values.config.s3 }}
{{- if $s3.existingSecret.name }}
{{- $s3.existingSecret.name }}
{{- else }}
{{- if not (or (and $s3.accessKeyId $s3.secretAccessKey) $s3.ambientCredentials) }}
{{- fail "videoflix: S3 credentials are required: set config.s3.accessKeyId and config.s3.secretAccessKey, or config.s3.existingSecret.name, or config.s3.ambientCredentials=true (IRSA / workload identity)" }}
{{- end }}
{{- include "videoflix.componentName" (list . "s3") }}
{{- end }}
{{- end }}

{{/* Whether S3 keys come from a Secret (not from the pod identity). */}}
{{- define "videoflix.s3HasKeys" -}}
{{- $s3 := .Values.config.s3 }}
{{- if or $s3.existingSecret.name (and $s3.accessKeyId $s3.secretAccessKey (not $s3.ambientCredentials)) }}true{{- end }}
{{- end }}

{{/* stringData of the chart-managed S3 Secret. */}}
{{- define "videoflix.s3SecretData" -}}
{{- $s3 := .Values.config.s3 -}}
VIDEOFLIX_S3_REGION: {{ $s3.region | quote }}
{{- with $s3.endpointUrl }}
VIDEOFLIX_S3_ENDPOINT_URL: {{ . | quote }}
{{- end }}
{{- if and $s3.accessKeyId $s3.secretAccessKey (not $s3.ambientCredentials) }}
VIDEOFLIX_S3_ACCESS_KEY_ID: {{ $s3.accessKeyId | quote }}
VIDEOFLIX_S3_SECRET_ACCESS_KEY: {{ $s3.secretAccessKey | quote }}
{{- end }}
{{- end }}

{{- define "videoflix.smtpPasswordRef" -}}
{{- $smtp := .Values.config.smtp }}
{{- if $smtp.existingSecret.name }}
name: {{ $smtp.existingSecret.name }}
key: {{ $smtp.existingSecret.key }}
{{- else if $smtp.password }}
name: {{ include "videoflix.secretName" . }}
key: smtp-password
{{- else if $smtp.username }}
{{- fail "videoflix: config.smtp.username is set but no password: set config.smtp.password or config.smtp.existingSecret.name" }}
{{- end }}
{{- end }}

{{/* Whether the chart must render its own Secret (some secret value was given inline). */}}
{{- define "videoflix.needsSecret" -}}
{{- $c := .Values.config }}
{{- if or (and $c.database.url (not $c.database.existingSecret.name)) (and $c.jwt.secret (not $c.jwt.existingSecret.name)) (and $c.smtp.password (not $c.smtp.existingSecret.name)) }}true{{- end }}
{{- end }}

{{/* Database and storage environment of the API and the operator. */}}
{{- define "videoflix.storageEnv" -}}
- name: VIDEOFLIX_DATABASE_URL
  valueFrom:
    secretKeyRef:
      {{- include "videoflix.databaseUrlRef" . | trim | nindent 6 }}
- name: VIDEOFLIX_S3_REGION
  value: {{ .Values.config.s3.region | quote }}
{{- with .Values.config.s3.endpointUrl }}
- name: VIDEOFLIX_S3_ENDPOINT_URL
  value: {{ . | quote }}
{{- end }}
{{- $secret := include "videoflix.s3SecretName" . }}
{{- if include "videoflix.s3HasKeys" . }}
- name: VIDEOFLIX_S3_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: VIDEOFLIX_S3_ACCESS_KEY_ID
- name: VIDEOFLIX_S3_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: VIDEOFLIX_S3_SECRET_ACCESS_KEY
{{- end }}
- name: VIDEOFLIX_NAMESPACE
  value: {{ include "videoflix.transcodeNamespace" . | quote }}
{{- end }}

{{/* Security context of every pod: the `restricted` Pod Security Standard. */}}
{{- define "videoflix.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "videoflix.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop:
    - ALL
{{- end }}

{{/* Topology spread constraints with the component's selector filled in. */}}
{{- define "videoflix.topologySpread" -}}
{{- $root := index . 0 }}{{- $component := index . 1 }}{{- $constraints := index . 2 -}}
{{- range $constraints }}
- {{ toYaml (omit . "labelSelector") | nindent 2 | trim }}
  labelSelector:
    matchLabels:
      {{- include "videoflix.selectorLabels" (list $root $component) | nindent 6 }}
{{- end }}
{{- end }}

{{/* One egress rule; call with a dict of `to` (peers, empty = any address) and `ports`. */}}
{{- define "videoflix.egressRule" -}}
{{- if .to -}}
- to:
    {{- toYaml .to | nindent 4 }}
  ports:
{{- else -}}
- ports:
{{- end }}
    {{- toYaml .ports | nindent 4 }}
{{- end }}

{{/* Labels of the transcoder Job pods (the operator sets them; the NetworkPolicy selects them). */}}
{{- define "videoflix.transcoderPodLabels" -}}
app.kubernetes.io/name: videoflix-transcoder
app.kubernetes.io/managed-by: videoflix-operator
{{- end }}
