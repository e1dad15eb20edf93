{{/*
Names and labels: every template takes its name and labels from here.
*/}}

{{/* The chart's name, or nameOverride. */}}
{{- define "conveyor.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's name for its objects: fullnameOverride, else <release>[-<chart>]. */}}
{{- define "conveyor.fullname" -}}
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

{{/* chart: <name>-<version>, for the helm.sh/chart label. */}}
{{- define "conveyor.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The labels every object of the release carries. */}}
{{- define "conveyor.labels" -}}
helm.sh/chart: {{ include "conveyor.chart" . }}
{{ include "conveyor.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: conveyor
{{- end }}

{{/* The labels that select the operator's pods. */}}
{{- define "conveyor.selectorLabels" -}}
app.kubernetes.io/name: {{ include "conveyor.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The operator's ServiceAccount. */}}
{{- define "conveyor.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "conveyor.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret and key that hold the broker URL. */}}
{{- define "conveyor.amqpSecretName" -}}
{{- if .Values.amqp.existingSecret }}
{{- .Values.amqp.existingSecret }}
{{- else if .Values.amqp.url }}
{{- printf "%s-amqp" (include "conveyor.fullname" .) }}
{{- else }}
{{- include "conveyor.rabbitmqName" . }}
{{- end }}
{{- end }}

{{- define "conveyor.amqpSecretKey" -}}
{{- if .Values.amqp.existingSecret }}
{{- .Values.amqp.existingSecretKey }}
{{- else }}url{{- end }}
{{- end }}

{{/* The labels that select the single-node RabbitMQ's pod. */}}
{{- define "conveyor.rabbitmqSelectorLabels" -}}
app.kubernetes.io/name: rabbitmq
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The single-node RabbitMQ's name, when rabbitmq.enabled. */}}
{{- define "conveyor.rabbitmqName" -}}
{{- printf "%s-rabbitmq" (include "conveyor.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* "true" when the operator has an object store: store.enabled, or the bundled one. */}}
{{- define "conveyor.storeEnabled" -}}
{{- if or .Values.store.enabled .Values.store.bundled.enabled }}true{{ end }}
{{- end }}

{{/* The bundled object store's name, and the labels that select its pod. */}}
{{- define "conveyor.storeName" -}}
{{- printf "%s-store" (include "conveyor.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "conveyor.storeSelectorLabels" -}}
app.kubernetes.io/name: conveyor-s3
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The port the bundled store serves S3 on. */}}
{{- define "conveyor.storePort" -}}9000{{- end }}

{{/* The Secret with the operator's store key pair (keys accessKey and secretKey). */}}
{{- define "conveyor.storeSecretName" -}}
{{- if .Values.store.bundled.enabled }}
{{- include "conveyor.storeName" . }}
{{- else }}
{{- .Values.store.existingSecret }}
{{- end }}
{{- end }}

{{/* The store's endpoint (empty: AWS S3) and bucket, the bundled store's when it runs. */}}
{{- define "conveyor.storeEndpoint" -}}
{{- if .Values.store.bundled.enabled }}
{{- printf "http://%s.%s.svc:%s" (include "conveyor.storeName" .) .Release.Namespace (include "conveyor.storePort" .) }}
{{- else }}
{{- .Values.store.endpoint | trimSuffix "/" }}
{{- end }}
{{- end }}

{{- define "conveyor.storeBucket" -}}
{{- if and .Values.store.bundled.enabled (not .Values.store.bucket) }}conveyor
{{- else }}{{ .Values.store.bucket }}{{ end }}
{{- end }}

{{/* The store's TCP port as its endpoint says (443 for AWS S3 and an https URL without one). */}}
{{- define "conveyor.storeEndpointPort" -}}
{{- $endpoint := include "conveyor.storeEndpoint" . }}
{{- $port := regexFind ":[0-9]+$" (default "" (urlParse (default "https://s3" $endpoint)).host) | trimPrefix ":" }}
{{- if $port }}{{ $port }}
{{- else if hasPrefix "http://" $endpoint }}80
{{- else }}443{{ end }}
{{- end }}

{{/* The Lease that elects the acting replica: one per release. */}}
{{- define "conveyor.leaseName" -}}
{{- default (include "conveyor.fullname" .) .Values.operator.leaderLease }}
{{- end }}

{{/*
The rules the operator needs in each namespace it watches; tests/unit/test_chart_rbac.py
derives the same set from the code. Server-side apply needs create besides patch. Nothing
reads Secrets: no get, list or watch, and no patch either, since a PATCH answers with the
whole object; the operator replaces or creates its broker Secrets (Kube.apply_secret).
WorkflowRuns are only watched by kopf (no finalizer, no progress annotations): no patch.
*/}}
{{- define "conveyor.operatorRules" -}}
- apiGroups: ["conveyor.dev"]
  resources: ["workflows"]
  verbs: ["list", "watch", "patch"]
- apiGroups: ["conveyor.dev"]
  resources: ["workflowruns"]
  verbs: ["create", "delete", "list", "watch"]
- apiGroups: ["conveyor.dev"]
  resources: ["workflows/status", "workflowruns/status"]
  verbs: ["patch"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["create", "list", "patch", "delete"]
- apiGroups: ["apps"]
  resources: ["deployments/scale"]
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "patch"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["create", "update"]
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["create", "get", "patch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}

{{/*
What kopf needs at cluster scope to discover resources: it lists and watches CRDs always, and
namespaces when it watches a list of namespaces rather than the whole cluster.
*/}}
{{- define "conveyor.discoveryRules" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
{{- if .Values.operator.namespaces }}
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}
{{- end }}

{{/*
The egress rule to the API server (networkPolicy.apiServer). What the values leave empty is
read from the cluster: the `kubernetes` Service's ClusterIP and ports, and its EndpointSlice's
addresses and ports, since plugins differ in whether they match before or after the Service's
address translation. `helm template` reads nothing (lookup is empty there), so without the
endpoints' addresses the chart refuses to render rather than render a policy that cuts the
operator off its API server.
*/}}
{{- define "conveyor.apiServerEgress" -}}
{{- $values := .Values.networkPolicy.apiServer }}
{{- $cidrs := list }}
{{- $ports := list }}
{{- $endpoints := 0 }}
{{- if not (and $values.cidrs $values.ports) }}
{{- with (lookup "v1" "Service" "default" "kubernetes").spec }}
{{- if .clusterIP }}
{{- $cidrs = append $cidrs (include "conveyor.hostCidr" .clusterIP) }}
{{- end }}
{{- range .ports }}
{{- $ports = append $ports (int .port) }}
{{- if and .targetPort (not (kindIs "string" .targetPort)) }}
{{- $ports = append $ports (int .targetPort) }}
{{- end }}
{{- end }}
{{- end }}
{{- with lookup "discovery.k8s.io/v1" "EndpointSlice" "default" "kubernetes" }}
{{- range .endpoints }}
{{- range .addresses }}
{{- $cidrs = append $cidrs (include "conveyor.hostCidr" .) }}
{{- $endpoints = add1 $endpoints }}
{{- end }}
{{- end }}
{{- range .ports }}
{{- $ports = append $ports (int .port) }}
{{- end }}
{{- end }}
{{- end }}
{{- if $values.cidrs }}
{{- $cidrs = $values.cidrs }}
{{- else if not $endpoints }}
{{- fail "networkPolicy.apiServer.cidrs: the API server's addresses could not be read from the cluster (helm template reads nothing); set them: kubectl get endpointslice kubernetes -n default -o jsonpath='{.endpoints[*].addresses}' (each as a /32), and the ClusterIP of Service default/kubernetes" }}
{{- end }}
{{- if $values.ports }}
{{- $ports = $values.ports }}
{{- else if not $ports }}
{{- fail "networkPolicy.apiServer.ports: the API server's ports could not be read from the cluster; set them (often [443, 6443]): kubectl get endpointslice kubernetes -n default -o jsonpath='{.ports[*].port}'" }}
{{- end -}}
- to:
  {{- range $cidrs | uniq }}
  - ipBlock:
      cidr: {{ . | quote }}
  {{- end }}
  ports:
  {{- range $ports | uniq }}
  - protocol: TCP
    port: {{ . }}
  {{- end }}
{{- end }}

{{/* An address as the CIDR of that one host: /32, or /128 for IPv6. */}}
{{- define "conveyor.hostCidr" -}}
{{- if contains ":" . }}{{ . }}/128{{ else }}{{ . }}/32{{ end }}
{{- end }}

{{/* The egress rule to the cluster's DNS (networkPolicy.dns). */}}
{{- define "conveyor.dnsEgress" -}}
- to:
  {{- toYaml .Values.networkPolicy.dns.peers | nindent 2 }}
  ports:
  {{- range .Values.networkPolicy.dns.ports }}
  - protocol: UDP
    port: {{ . }}
  - protocol: TCP
    port: {{ . }}
  {{- end }}
{{- end }}
