{{/* Names */}}
{{- define "flowbus.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "flowbus.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one part: include with (dict "ctx" $ "part" "gateway") */}}
{{- define "flowbus.selector" -}}
app.kubernetes.io/name: {{ .ctx.Chart.Name }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .part }}
{{- end -}}

{{- define "flowbus.image" -}}
{{- $img := .image | default dict -}}
{{- $repo := $img.repository | default .ctx.Values.image.repository -}}
{{- $tag := $img.tag | default .ctx.Values.image.tag | default .ctx.Chart.AppVersion -}}
{{- printf "%s:%s" $repo $tag -}}
{{- end -}}

{{- define "flowbus.secretName" -}}
{{- .Values.auth.existingSecret | default (printf "%s-auth" (include "flowbus.fullname" .)) -}}
{{- end -}}

{{/* The Secret holding FLOWBUS_SECRETS_KEY: yours (secretsKey.existingSecret) or the chart's. */}}
{{- define "flowbus.secretsKeySecretName" -}}
{{- .Values.secretsKey.existingSecret | default (printf "%s-secrets-key" (include "flowbus.fullname" .)) -}}
{{- end -}}

{{- define "flowbus.natsUrl" -}}
{{- if .Values.nats.bundled -}}
{{- printf "nats://%s-nats:%d" (include "flowbus.fullname" .) (int .Values.nats.clientPort) -}}
{{- else -}}
{{- required "nats.external.url is required when nats.bundled is false" .Values.nats.external.url -}}
{{- end -}}
{{- end -}}

{{/* Environment every flowbus container gets: how to reach NATS, namespace, logs, and
the key that seals and opens secrets at rest (the same in every part). */}}
{{- define "flowbus.commonEnv" -}}
- name: FLOWBUS_NATS_URL
  value: {{ include "flowbus.natsUrl" . | quote }}
- name: FLOWBUS_SECRETS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "flowbus.secretsKeySecretName" . }}
      key: {{ .Values.secretsKey.secretKey }}
- name: FLOWBUS_NAMESPACE
  value: {{ .Values.flowbusNamespace | quote }}
- name: FLOWBUS_HOME
  value: /var/lib/flowbus
- name: FLOWBUS_LOG_FORMAT
  value: {{ .Values.logFormat | quote }}
{{- if not .Values.nats.bundled }}
{{- $ext := .Values.nats.external }}
{{- range $key, $var := dict "userKey" "FLOWBUS_NATS_USER" "passwordKey" "FLOWBUS_NATS_PASSWORD" "tokenKey" "FLOWBUS_NATS_TOKEN" }}
{{- if and $ext.existingSecret (index $ext $key) }}
- name: {{ $var }}
  valueFrom:
    secretKeyRef:
      name: {{ $ext.existingSecret }}
      key: {{ index $ext $key }}
{{- end }}
{{- end }}
{{- if and $ext.existingSecret $ext.credsKey }}
- name: FLOWBUS_NATS_CREDS
  value: /etc/flowbus/nats/{{ $ext.credsKey }}
{{- end }}
{{- end }}
{{- range $name, $value := .Values.env }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end -}}

{{/* Writable scratch space: the root filesystem is read-only. */}}
{{- define "flowbus.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: home
  mountPath: /var/lib/flowbus
{{- if and (not .Values.nats.bundled) .Values.nats.external.existingSecret .Values.nats.external.credsKey }}
- name: nats-creds
  mountPath: /etc/flowbus/nats
  readOnly: true
{{- end }}
{{- end -}}

{{- define "flowbus.volumes" -}}
- name: tmp
  emptyDir: {}
- name: home
  emptyDir: {}
{{- if and (not .Values.nats.bundled) .Values.nats.external.existingSecret .Values.nats.external.credsKey }}
- name: nats-creds
  secret:
    secretName: {{ .Values.nats.external.existingSecret }}
    items:
      - key: {{ .Values.nats.external.credsKey }}
        path: {{ .Values.nats.external.credsKey }}
{{- end }}
{{- end -}}

{{- define "flowbus.podSpecCommon" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
volumes:
  {{- include "flowbus.volumes" . | nindent 2 }}
{{- end -}}

{{/* The bundled NATS's per-part users: the Secret holding their passwords, one key per role. */}}
{{- define "flowbus.natsUsersSecretName" -}}
{{- printf "%s-nats-users" (include "flowbus.fullname" .) -}}
{{- end -}}

{{/* Roles of events/permissions.py, in its order. */}}
{{- define "flowbus.natsRoles" -}}
gateway orchestrator runner task-worker admin
{{- end -}}

{{/* The bundled NATS's users block: each role with its permissions from
files/nats-permissions.json (written from events/permissions.py), for this namespace. */}}
{{- define "flowbus.natsUsers" -}}
{{- $ns := .Values.flowbusNamespace -}}
{{- $text := .Files.Get "files/nats-permissions.json" -}}
{{- $text = $text | replace "NSPLACEHOLDER" ($ns | upper | replace "-" "_") | replace "nsplaceholder" $ns -}}
{{- $perms := $text | fromJson -}}
users: [
{{- range $role := splitList " " (include "flowbus.natsRoles" .) }}
{{- $p := index $perms $role }}
  {user: {{ $role }}, password: $NATS_PASSWORD_{{ upper $role | replace "-" "_" }}, permissions: {publish: {allow: [
    {{- range $i, $s := $p.publish.allow }}{{ if $i }}, {{ end }}{{ $s | quote }}{{ end -}}
  ], deny: [
    {{- range $i, $s := $p.publish.deny }}{{ if $i }}, {{ end }}{{ $s | quote }}{{ end -}}
  ]}, subscribe: {allow: [
    {{- range $i, $s := $p.subscribe.allow }}{{ if $i }}, {{ end }}{{ $s | quote }}{{ end -}}
  ]}}}
{{- end }}
]
{{- end -}}

{{/* A part's own NATS user (bundled NATS): include with (dict "ctx" $ "role" "gateway"). */}}
{{- define "flowbus.natsUserEnv" -}}
{{- if .ctx.Values.nats.bundled }}
- name: FLOWBUS_NATS_USER
  value: {{ .role | quote }}
- name: FLOWBUS_NATS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "flowbus.natsUsersSecretName" .ctx }}
      key: {{ .role }}
{{- end }}
{{- end -}}
