{{/* The server configuration (TOML; docs/SERVER.md). Values use camelCase keys, the file the
     server's snake_case: one key per value, strings and lists written as JSON, which TOML reads
     the same way. */}}

{{- define "surge.server.policyToml" -}}
{{- range $key, $value := . }}
{{- if eq $key "authorizedKeys" }}
authorized_keys_data = {{ join "\n" $value | toJson }}
{{- else if eq $key "datagramSize" }}
datagram_size = {{ int $value }}
{{- else }}
{{ snakecase $key }} = {{ toJson $value }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "surge.server.configToml" -}}
# Made by the Helm chart from server.* values; see docs/SERVER.md.
[server]
listen = "0.0.0.0"
ssh_port = {{ .Values.server.sshPort }}
udp_ports = "{{ .Values.server.udpPorts.first }}-{{ .Values.server.udpPorts.last }}"
host_key = "/etc/surge/host-key/ssh_host_key"
{{- if .Values.server.authorizedKeys }}
authorized_keys = "/etc/surge/keys/authorized_keys"
{{- end }}
{{- if .Values.server.tokenSecret.enabled }}
token_secret_file = "/etc/surge/token/token-secret"
{{- end }}
max_sessions = {{ .Values.server.maxSessions }}

[defaults]
{{- include "surge.server.policyToml" .Values.server.config.defaults }}
{{- range $name, $user := .Values.server.config.users }}

[users.{{ $name | toJson }}]
{{- include "surge.server.policyToml" $user }}
{{- end }}
{{- end -}}
