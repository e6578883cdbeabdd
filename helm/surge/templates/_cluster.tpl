{{/* Pieces of the coordinator and worker pods ({root, component, values, args}). */}}

{{/* Pod annotations: checksums make pods restart when the Secrets they read change. */}}
{{- define "surge.cluster.podAnnotations" -}}
{{- $root := .root -}}
checksum/redis-secret: {{ include (print $root.Template.BasePath "/redis/secret.yaml") $root | sha256sum }}
checksum/client-key: {{ include (print $root.Template.BasePath "/client-key-secret.yaml") $root | sha256sum }}
{{- with .values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "surge.cluster.container" -}}
{{- $root := .root -}}
- name: {{ .component }}
  image: {{ include "surge.image" $root }}
  imagePullPolicy: {{ $root.Values.image.pullPolicy }}
  args:
    {{- toYaml .args | nindent 4 }}
  env:
    {{- include "surge.brokerEnv" $root | nindent 4 }}
    - name: SURGE_HEALTH_PORT
      value: {{ $root.Values.cluster.metricsPort | quote }}
    {{- with $root.Values.cluster.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  ports:
    - name: metrics
      containerPort: {{ $root.Values.cluster.metricsPort }}
      protocol: TCP
  {{- if .values.livenessProbe.enabled }}
  livenessProbe:
    {{- include "surge.tcpProbe" (dict "port" "metrics" "probe" .values.livenessProbe) | nindent 4 }}
  {{- end }}
  {{- if .values.readinessProbe.enabled }}
  readinessProbe:
    {{- include "surge.tcpProbe" (dict "port" "metrics" "probe" .values.readinessProbe) | nindent 4 }}
  {{- end }}
  resources:
    {{- toYaml .values.resources | nindent 4 }}
  securityContext:
    {{- toYaml $root.Values.containerSecurityContext | nindent 4 }}
  volumeMounts:
    {{- include "surge.scratchMounts" $root | nindent 4 }}
    - name: source
      mountPath: {{ $root.Values.cluster.source.mountPath }}
      readOnly: {{ $root.Values.cluster.source.readOnly }}
    {{- if or $root.Values.cluster.sshKey.privateKey $root.Values.cluster.sshKey.existingSecret }}
    - name: client-key
      mountPath: {{ $root.Values.cluster.sshKey.mountPath }}
      readOnly: true
    {{- end }}
{{- end -}}

{{- define "surge.cluster.volumes" -}}
{{- $root := .root -}}
{{- include "surge.scratchVolumes" $root }}
- name: source
  {{- if $root.Values.cluster.source.existingClaim }}
  persistentVolumeClaim:
    claimName: {{ $root.Values.cluster.source.existingClaim }}
    readOnly: {{ $root.Values.cluster.source.readOnly }}
  {{- else }}
  emptyDir: {}
  {{- end }}
{{- if or $root.Values.cluster.sshKey.privateKey $root.Values.cluster.sshKey.existingSecret }}
- name: client-key
  secret:
    secretName: {{ include "surge.clientKey.secretName" $root }}
    defaultMode: 0440
    items:
      - key: {{ $root.Values.cluster.sshKey.existingSecretKey }}
        path: {{ $root.Values.cluster.sshKey.existingSecretKey }}
{{- end }}
{{- end -}}
