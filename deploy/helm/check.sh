#!/usr/bin/env bash
# check.sh — `make helm-check`: lint the pancap chart and validate what it
# renders against the Kubernetes and CRD schemas vendored in
# deploy/helm/schemas/ (kubeconform -strict: unknown fields are errors; a
# kind without a schema is an error too), offline.
#
# Renders checked: the default values, and every option on (CUDA image with
# GPUs, a model volume and LoRA, ServiceMonitor, HPA, InferencePool with
# its endpoint picker at two replicas). Also checks that the pod's
# terminationGracePeriodSeconds stays above --drain-timeout.
#
# HELM and KUBECONFORM name the binaries (default: bin/helm and
# bin/kubeconform, installed with `go install` at the pinned versions when
# missing: a first build of helm takes a few minutes).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
HELM_VERSION=v4.3.2
KUBECONFORM_VERSION=v0.7.0
helm=${HELM:-$root/bin/helm}
kubeconform=${KUBECONFORM:-$root/bin/kubeconform}
if [[ ! -x $helm ]]; then
	echo "helm-check: installing helm $HELM_VERSION into bin/"
	GOBIN=$root/bin go install helm.sh/helm/v4/cmd/helm@$HELM_VERSION
fi
if [[ ! -x $kubeconform ]]; then
	echo "helm-check: installing kubeconform $KUBECONFORM_VERSION into bin/"
	GOBIN=$root/bin go install github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION
fi

chart=deploy/helm/pancap
all_on=(--set gpu.enabled=true --set model.volume.persistentVolumeClaim.claimName=pancapchain-13b
	--set model.lora=adapter --set serviceMonitor.enabled=true --set autoscaling.enabled=true
	--set inferencePool.enabled=true --set inferencePool.endpointPicker.replicas=2)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/helm-check.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

"$helm" lint --strict "$chart"
"$helm" lint --strict "$chart" "${all_on[@]}"

"$helm" template pancap "$chart" --namespace serving >"$tmp/default.yaml"
"$helm" template pancap "$chart" --namespace serving "${all_on[@]}" >"$tmp/all.yaml"
"$kubeconform" -strict -summary \
	-schema-location "$root/deploy/helm/schemas/{{.ResourceKind}}{{.KindSuffix}}.json" \
	"$tmp/default.yaml" "$tmp/all.yaml"

# Every kind of the full render was validated (none left out).
for kind in Deployment Service ServiceAccount ServiceMonitor HorizontalPodAutoscaler InferencePool ConfigMap Role RoleBinding; do
	grep -q "^kind: $kind$" "$tmp/all.yaml" || { echo "helm-check: FAIL: no $kind rendered" >&2; exit 1; }
done

# The grace period covers the preStop pause and the drain.
"$helm" template pancap "$chart" --set drainTimeoutSeconds=120 --set preStopSleepSeconds=10 >"$tmp/drain.yaml"
grep -q -- '--drain-timeout=120s' "$tmp/drain.yaml" &&
	grep -q 'terminationGracePeriodSeconds: 145' "$tmp/drain.yaml" ||
	{ echo "helm-check: FAIL: terminationGracePeriodSeconds does not follow drainTimeoutSeconds" >&2; exit 1; }
# The endpoint picker reads Pancap Serve's metric names.
for flag in total-queued-requests-metric=pancap_num_requests_waiting \
	total-running-requests-metric=pancap_num_requests_running \
	kv-cache-usage-percentage-metric=pancap_kv_cache_usage_perc cache-info-metric=pancap_cache_config_info \
	model-server-metrics-port=9090; do
	grep -q -- "--$flag" "$tmp/all.yaml" || { echo "helm-check: FAIL: the endpoint picker lacks --$flag" >&2; exit 1; }
done
echo "helm-check: PASS"
