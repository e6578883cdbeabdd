{{/* vim: set filetype=mustache: */}}

{{/* The chart name, shortened to the 63 characters a label allows. */}}
{{- define "surge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's full name: "<release>-<chart>" unless the release name already holds it. */}}
{{- define "surge.fullname" -}}
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

{{/* The name of one component's objects: "<fullname>-<component>". */}}
{{- define "surge.componentName" -}}
{{- printf "%s-%s" (include "surge.fullname" .root | trunc 50 | trimSuffix "-") .component -}}
{{- end -}}

{{- define "surge.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "surge.labels" -}}
helm.sh/chart: {{ include "surge.chart" . }}
{{ include "surge.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: surge
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "surge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "surge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of one component's objects; call with (dict "root" $ "component" "worker"). */}}
{{- define "surge.componentLabels" -}}
{{ include "surge.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "surge.componentSelectorLabels" -}}
{{ include "surge.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "surge.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "surge.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* An image reference from {registry, repository, tag, digest}; the tag defaults to appVersion. */}}
{{- define "surge.imageRef" -}}
{{- $repo := .image.repository -}}
{{- if .image.registry -}}{{- $repo = printf "%s/%s" .image.registry .image.repository -}}{{- end -}}
{{- if .image.digest -}}
{{- printf "%s@%s" $repo .image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (default .default .image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "surge.image" -}}
{{- include "surge.imageRef" (dict "image" .Values.image "default" .Chart.AppVersion) -}}
{{- end -}}

{{- define "surge.redis.image" -}}
{{- include "surge.imageRef" (dict "image" .Values.redis.image "default" "latest") -}}
{{- end -}}

{{/* Redis: where it is and which Secret holds its password. */}}
{{- define "surge.redis.host" -}}
{{- if .Values.redis.enabled -}}
{{- include "surge.componentName" (dict "root" . "component" "redis") -}}
{{- else -}}
{{- required "externalRedis.host is required when redis.enabled is false" .Values.externalRedis.host -}}
{{- end -}}
{{- end -}}

{{- define "surge.redis.port" -}}
{{- if .Values.redis.enabled -}}{{ .Values.redis.service.port }}{{- else -}}{{ .Values.externalRedis.port }}{{- end -}}
{{- end -}}

{{- define "surge.redis.auth" -}}
{{- if .Values.redis.enabled -}}{{- toYaml .Values.redis.auth -}}{{- else -}}{{- toYaml .Values.externalRedis.auth -}}{{- end -}}
{{- end -}}

{{/* The Secret holding the Redis password: the operator's existingSecret or the chart's own. */}}
{{- define "surge.redis.secretName" -}}
{{- $auth := include "surge.redis.auth" . | fromYaml -}}
{{- if $auth.existingSecret -}}
{{- $auth.existingSecret -}}
{{- else -}}
{{- include "surge.componentName" (dict "root" . "component" "redis") -}}
{{- end -}}
{{- end -}}

{{- define "surge.redis.secretKey" -}}
{{- $auth := include "surge.redis.auth" . | fromYaml -}}
{{- if $auth.existingSecret -}}{{- $auth.existingSecretPasswordKey -}}{{- else -}}redis-password{{- end -}}
{{- end -}}

{{/* The Redis password the chart stores: the given one, the one already in the cluster (so an
     upgrade keeps it), else a new random one. */}}
{{- define "surge.redis.password" -}}
{{- $auth := include "surge.redis.auth" . | fromYaml -}}
{{- if $auth.password -}}
{{- $auth.password -}}
{{- else -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "surge.redis.secretName" .) -}}
{{- if and $existing (index $existing.data "redis-password") -}}
{{- index $existing.data "redis-password" | b64dec -}}
{{- else -}}
{{- randAlphaNum 32 -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The broker environment of coordinator and workers. The password comes from the Secret and
     is put into the URL by Kubernetes' $(VAR) expansion, so it is never in the pod spec. */}}
{{- define "surge.brokerEnv" -}}
{{- if and (not .Values.redis.enabled) (not .Values.externalRedis.auth.password) (not .Values.externalRedis.auth.existingSecret) -}}
{{- fail "externalRedis.auth.password or externalRedis.auth.existingSecret is required when redis.enabled is false" -}}
{{- end -}}
- name: SURGE_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "surge.redis.secretName" . }}
      key: {{ include "surge.redis.secretKey" . }}
- name: SURGE_BROKER_URL
  value: {{ printf "%s://:$(SURGE_REDIS_PASSWORD)@%s:%s/%d" (ternary "rediss" "redis" (and (not .Values.redis.enabled) .Values.externalRedis.tls)) (include "surge.redis.host" .) (include "surge.redis.port" .) (int (ternary 0 .Values.externalRedis.db .Values.redis.enabled)) | quote }}
{{- end -}}

{{/* The client SSH key workers log in to receivers with. */}}
{{- define "surge.clientKey.secretName" -}}
{{- default (include "surge.componentName" (dict "root" . "component" "client-key")) .Values.cluster.sshKey.existingSecret -}}
{{- end -}}

{{- define "surge.server.secretName" -}}
{{- include "surge.componentName" (dict "root" . "component" "server") -}}
{{- end -}}

{{- define "surge.hostKey.secretName" -}}
{{- default (include "surge.server.secretName" .) .Values.server.hostKey.existingSecret -}}
{{- end -}}

{{- define "surge.token.secretName" -}}
{{- default (include "surge.server.secretName" .) .Values.server.tokenSecret.existingSecret -}}
{{- end -}}

{{/* A container probe from {enabled, initialDelaySeconds, ...} and a TCP port name. */}}
{{- define "surge.tcpProbe" -}}
tcpSocket:
  port: {{ .port }}
initialDelaySeconds: {{ .probe.initialDelaySeconds }}
periodSeconds: {{ .probe.periodSeconds }}
timeoutSeconds: {{ .probe.timeoutSeconds }}
failureThreshold: {{ .probe.failureThreshold }}
successThreshold: 1
{{- end -}}

{{/* Pod scheduling fields shared by every component ({root, values}). */}}
{{- define "surge.podScheduling" -}}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Volumes every Surge container needs for a read-only root filesystem. */}}
{{- define "surge.scratchVolumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
- name: home
  emptyDir:
    sizeLimit: 64Mi
{{- end -}}

{{- define "surge.scratchMounts" -}}
- name: tmp
  mountPath: /tmp
- name: home
  mountPath: /var/lib/surge
{{- end -}}
