{{/* The release's full name, at most 63 characters. */}}
{{- define "ruleop.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "ruleop.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ruleop
{{- end -}}

{{/* Labels selecting the operator's pods. */}}
{{- define "ruleop.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "ruleop.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "ruleop.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create=false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The ConfigMap holding the rule files. */}}
{{- define "ruleop.rulesConfigMap" -}}
{{- default (printf "%s-rules" (include "ruleop.fullname" .)) .Values.rules.existingConfigMap -}}
{{- end -}}

{{/* True when the user brings their own rules (then rbac.generated is required). */}}
{{- define "ruleop.ownRules" -}}
{{- if or .Values.rules.existingConfigMap .Values.rules.files -}}true{{- end -}}
{{- end -}}

{{/* The `rules` of the operator's ClusterRole: from `ruleop rbac` output. */}}
{{- define "ruleop.clusterRoleRules" -}}
{{- $source := .Values.rbac.generated -}}
{{- if not $source -}}
{{- if include "ruleop.ownRules" . -}}
{{- fail "rbac.generated is required with your own rules: ruleop rbac --rules DIR > clusterrole.yaml, then --set-file rbac.generated=clusterrole.yaml" -}}
{{- end -}}
{{- $source = .Files.Get "files/rbac/clusterrole.yaml" -}}
{{- end -}}
{{- $role := fromYaml $source -}}
{{- if or (hasKey $role "Error") (ne (get $role "kind") "ClusterRole") (not (get $role "rules")) -}}
{{- fail (printf "rbac.generated must be the ClusterRole that `ruleop rbac` prints (a kind: ClusterRole with rules)%s" (ternary (printf ": %v" (get $role "Error")) "" (hasKey $role "Error"))) -}}
{{- end -}}
{{- toYaml (get $role "rules") -}}
{{- end -}}
