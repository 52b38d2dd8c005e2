{{/*
Shared snippets. Component-scoped helpers take (dict "root" $ "component" "<name>") so one
definition serves frontend, backend and chatbot.
*/}}

{{/* The one namespace the stack runs in: the service URLs in the ConfigMaps name it. */}}
{{- define "lumina.namespace" -}}
lumina
{{- end }}

{{/* Labels on every namespaced object (seed "Labels and Selectors"). */}}
{{- define "lumina.labels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/part-of: lumina-todo
app.kubernetes.io/managed-by: helm
{{- end }}

{{/*
Selector labels. The seed lists name + instance only, which all three Deployments share, so each
Service would select every pod of the release; the component label makes each selector unique.
*/}}
{{- define "lumina.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* metadata block for a namespaced object: name, namespace, labels. */}}
{{- define "lumina.metadata" -}}
name: {{ .name }}
namespace: {{ include "lumina.namespace" .root }}
labels:
  {{- include "lumina.labels" . | nindent 2 }}
{{- end }}

{{/* "repository:tag" of a component's image. */}}
{{- define "lumina.image" -}}
{{- $image := (index .root.Values .component).image -}}
{{ $image.repository }}:{{ $image.tag }}
{{- end }}

{{/* Pod-level security context: non-root uid/gid 10001, volumes group-owned by fsGroup. */}}
{{- define "lumina.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
fsGroup: {{ .Values.securityContext.fsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Container-level security context (repeated per container so no pod-level override is lost). */}}
{{- define "lumina.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
allowPrivilegeEscalation: false
capabilities:
  drop:
    - ALL
{{- end }}

{{/* Liveness and readiness HTTP probes on the component's container port; a startup probe
     when the component sets probes.startup (liveness and readiness wait for it). */}}
{{- define "lumina.probes" -}}
{{- $values := index .root.Values .component -}}
livenessProbe:
  httpGet:
    path: {{ .path }}
    port: {{ $values.containerPort }}
  initialDelaySeconds: {{ $values.probes.liveness.initialDelaySeconds }}
  periodSeconds: {{ $values.probes.liveness.periodSeconds }}
readinessProbe:
  httpGet:
    path: {{ .path }}
    port: {{ $values.containerPort }}
  initialDelaySeconds: {{ $values.probes.readiness.initialDelaySeconds }}
  periodSeconds: {{ $values.probes.readiness.periodSeconds }}
{{- with $values.probes.startup }}
startupProbe:
  httpGet:
    path: {{ $.path }}
    port: {{ $values.containerPort }}
  periodSeconds: {{ .periodSeconds }}
  failureThreshold: {{ .failureThreshold }}
{{- end }}
{{- end }}

{{/* One env entry read from a ConfigMap or Secret key named like the variable. */}}
{{- define "lumina.envFrom" -}}
- name: {{ .key }}
  valueFrom:
    {{ .kind }}KeyRef:
      name: {{ .source }}
      key: {{ .key }}
{{- end }}
