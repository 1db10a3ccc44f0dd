{{/*
Prefix of every name: the release's, or fullnameOverride. 40 characters
leave room for the longest suffix (-tei-rerank) and for the revision hash a
StatefulSet adds to its pods' labels.
*/}}
{{- define "tei-sidecar.prefix" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* A component's name. Call with (list $ "tei-embed"). */}}
{{- define "tei-sidecar.name" -}}
{{- printf "%s-%s" (include "tei-sidecar.prefix" (index . 0)) (index . 1) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* A component's selector labels. Call with (list $ "tei-embed"). */}}
{{- define "tei-sidecar.selectorLabels" -}}
app.kubernetes.io/name: tei-sidecar
app.kubernetes.io/instance: {{ (index . 0).Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* A component's labels. Call with (list $ "tei-embed"). */}}
{{- define "tei-sidecar.labels" -}}
{{- $root := index . 0 -}}
{{ include "tei-sidecar.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" $root.Chart.Name $root.Chart.Version | replace "+" "_" }}
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
{{- end -}}

{{/* The Secret the chart creates for secrets given as values. */}}
{{- define "tei-sidecar.secretName" -}}
{{- include "tei-sidecar.name" (list . "secrets") -}}
{{- end -}}

{{/* Whether a secret of .Values.secrets is given. Call with the secret's values; prints "true" or nothing. */}}
{{- define "tei-sidecar.hasSecret" -}}
{{- if or .existingSecret .value }}true{{ end -}}
{{- end -}}

{{/*
An env entry reading a secret through secretKeyRef, or nothing when it is
not given. Call with (list $ "ENV_NAME" $.Values.secrets.NAME), in a with
block that indents it.
*/}}
{{- define "tei-sidecar.secretEnv" -}}
{{- $root := index . 0 -}}
{{- $s := index . 2 -}}
{{- if include "tei-sidecar.hasSecret" $s -}}
- name: {{ index . 1 }}
  valueFrom:
    secretKeyRef:
      name: {{ $s.existingSecret | default (include "tei-sidecar.secretName" $root) }}
      key: {{ required "each secret needs a key" $s.key }}
{{- end }}
{{- end -}}

{{/* The kind of TEI's workloads. */}}
{{- define "tei-sidecar.teiKind" -}}
{{- if eq .Values.tei.modelCache.type "perPodPVC" }}StatefulSet{{ else }}Deployment{{ end -}}
{{- end -}}

{{/*
A model's discovery URL for the sidecar: every ready pod behind its
headless Service. Call with (list $ "embed").
*/}}
{{- define "tei-sidecar.discoveryURL" -}}
{{- $root := index . 0 -}}
{{- $model := index $root.Values.tei (index . 1) -}}
{{- printf "dns+http://%s.%s.svc.%s:%d" (include "tei-sidecar.name" (list $root (printf "tei-%s" (index . 1)))) $root.Release.Namespace $root.Values.clusterDomain (int $model.port) -}}
{{- end -}}

{{/* Checks of values that no template could render sensibly. */}}
{{- define "tei-sidecar.validate" -}}
{{- $types := list "emptyDir" "sharedPVC" "existingClaim" "perPodPVC" -}}
{{- if not (has .Values.tei.modelCache.type $types) }}
{{- fail (printf "tei.modelCache.type must be one of %s, got %q" (join ", " $types) .Values.tei.modelCache.type) }}
{{- end }}
{{- if and (eq .Values.tei.modelCache.type "existingClaim") (not .Values.tei.modelCache.existingClaim) }}
{{- fail "tei.modelCache.type existingClaim needs tei.modelCache.existingClaim" }}
{{- end }}
{{- if not .Values.tei.embed.enabled }}
{{- fail "tei.embed.enabled must be true: the sidecar needs an embedding model" }}
{{- end }}
{{- if and .Values.valkey.enabled (include "tei-sidecar.hasSecret" .Values.secrets.redisUrl) }}
{{- fail "valkey.enabled and secrets.redisUrl both give the sidecar a Redis: choose one" }}
{{- end }}
{{- $owned := list "TEI_LAUNCH" "SIDECAR_LISTEN" "TEI_EMBED_URL" "TEI_RERANK_URL" "RERANK_ENABLE" "BEARER_TOKEN" "TEI_API_KEY" "CACHE_REDIS_URL" }}
{{- range $k, $v := .Values.sidecar.settings }}
{{- if has $k $owned }}
{{- fail (printf "sidecar.settings.%s is the chart's to set (see values.yaml)" $k) }}
{{- end }}
{{- end }}
{{- range $k, $v := .Values.sidecar.env }}
{{- if has $k $owned }}
{{- fail (printf "sidecar.env.%s is the chart's to set (see values.yaml)" $k) }}
{{- end }}
{{- if hasKey $.Values.sidecar.settings $k }}
{{- fail (printf "sidecar.env.%s is in sidecar.settings too: set it in one place" $k) }}
{{- end }}
{{- end }}
{{- range $name := list "embed" "rerank" }}
{{- $model := index $.Values.tei $name }}
{{- if and $model.enabled (lt (int $model.replicas) 1) }}
{{- fail (printf "tei.%s.replicas must be at least 1, got %v" $name $model.replicas) }}
{{- end }}
{{- end }}
{{- end -}}
