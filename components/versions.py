"""Every non-Python version the platform deploys, pinned once.

Python packages are pinned in requirements*.txt; RAY_VERSION below must equal the
`ray` pin there (a test checks it), because the Job SDK client and the cluster's
Ray must agree.
"""
from __future__ import annotations

RAY_VERSION = "2.60.0"
RAY_PYTHON_TAG = "py311"
# rayproject/ray publishes a CPU and a CUDA variant of every release; GPU worker
# groups use the GPU variant of the same Ray version.
RAY_IMAGE_REPOSITORY = "rayproject/ray"
RAY_IMAGE_CPU = f"{RAY_IMAGE_REPOSITORY}:{RAY_VERSION}-{RAY_PYTHON_TAG}-cpu"
RAY_IMAGE_GPU = f"{RAY_IMAGE_REPOSITORY}:{RAY_VERSION}-{RAY_PYTHON_TAG}-gpu"

KUBERAY_VERSION = "1.7.0"
KUBERAY_CHART = "kuberay-operator"
KUBERAY_CHART_REPO = "https://ray-project.github.io/kuberay-helm/"

NVIDIA_DEVICE_PLUGIN_VERSION = "0.18.2"
NVIDIA_DEVICE_PLUGIN_CHART = "nvidia-device-plugin"
NVIDIA_DEVICE_PLUGIN_CHART_REPO = "https://nvidia.github.io/k8s-device-plugin"

CLUSTER_AUTOSCALER_CHART = "cluster-autoscaler"
CLUSTER_AUTOSCALER_CHART_VERSION = "9.50.1"
CLUSTER_AUTOSCALER_CHART_REPO = "https://kubernetes.github.io/autoscaler"

# EKS Kubernetes versions this package is tested against, each with the Cluster
# Autoscaler image whose minor matches it (the autoscaler supports only its own
# Kubernetes minor).
EKS_VERSIONS: dict[str, str] = {
    "1.33": "v1.33.2",
    "1.34": "v1.34.1",
}
DEFAULT_EKS_VERSION = "1.34"

# Queueing (docs/queues.md). Kueue publishes its chart as an OCI artifact only; the chart's own
# default image is a staging build, so the release's image is set explicitly. The e2e control plane
# runs the controller built from the Go module at the same version (tools/e2e/kueue.py).
KUEUE_VERSION = "v0.19.2"
KUEUE_CHART = "kueue"
KUEUE_CHART_VERSION = KUEUE_VERSION.removeprefix("v")
KUEUE_CHART_REPO = "oci://registry.k8s.io/kueue/charts"
KUEUE_IMAGE_REPOSITORY = "registry.k8s.io/kueue/kueue"
# Karpenter (capacity.provisioner: karpenter): the controller chart and its CRD chart, released
# together; the chart installs no CRDs of its own here (skipCrds), the CRD chart owns them.
KARPENTER_VERSION = "1.13.0"
KARPENTER_CHART = "karpenter"
KARPENTER_CRD_CHART = "karpenter-crd"
KARPENTER_CHART_REPO = "oci://public.ecr.aws/karpenter"

# Observability. kube-prometheus-stack 78.5.0 ships prometheus-operator v0.86.1; Helm installs
# its CRDs on first install only (docs/observability.md, "Upgrading the monitoring stack").
KUBE_PROMETHEUS_STACK_CHART = "kube-prometheus-stack"
KUBE_PROMETHEUS_STACK_VERSION = "78.5.0"
KUBE_PROMETHEUS_STACK_CHART_REPO = "https://prometheus-community.github.io/helm-charts"

# The chart's default image is the exporter of the same release (4.5.2-4.8.1: DCGM 4.5.2).
DCGM_EXPORTER_CHART = "dcgm-exporter"
DCGM_EXPORTER_VERSION = "4.8.1"
DCGM_EXPORTER_CHART_REPO = "https://nvidia.github.io/dcgm-exporter/helm-charts"

# The log-shipping sidecar in Ray pods; the upstream image has the cloudwatch_logs output built in.
FLUENT_BIT_VERSION = "4.2.0"
FLUENT_BIT_IMAGE = f"fluent/fluent-bit:{FLUENT_BIT_VERSION}"

# e2e toolchain (tools/e2e): built from Go modules, never deployed
# `make e2e-toolchain` builds these (plus the Pulumi CLI at requirements.txt's `pulumi` pin and the
# kubernetes provider at its `pulumi-kubernetes` pin) into a cache keyed by all of them;
# docs/e2e.md, "Toolchain".
KUBERNETES_E2E_VERSION = "v1.34.4"  # kube-apiserver/-controller-manager/-scheduler, kubectl; an EKS_VERSIONS minor
ETCD_VERSION = "v3.6.16"
KWOK_VERSION = "v0.8.0"
# The KubeRay operator the e2e control plane runs. It differs from KUBERAY_VERSION (what the
# platform deploys: chart, CRDs, and the only CRDs ../shared/kuberay-crds has) because the Go
# module proxy refuses ray-operator@v1.7.0's zip (403; its .info and .mod are served), so 1.7.0
# cannot be built here. v1.6.1 is served, builds, and reconciles the 1.7.0 CRDs (the e2e
# control-plane tests pass with it). `make e2e-status`, `make e2e-up` and the e2e test summary
# say so ("KubeRay operator v1.6.1 standing in for v1.7.0"). Set it to KUBERAY_VERSION once the
# proxy serves that release.
KUBERAY_E2E_OPERATOR_VERSION = "1.6.1"
# The exact version ray-operator's go.mod requires (at KUBERAY_E2E_OPERATOR_VERSION and at
# KUBERAY_VERSION alike); the proxy lists none.
KUBERAY_SCHEDULER_PLUGINS_VERSION = "v0.33.5"
# The pulumi-kubernetes provider's release commit, per `pulumi-kubernetes==` pin in
# requirements.txt, as the Go module proxy's pseudo-version of
# github.com/pulumi/pulumi-kubernetes/provider/v4 (the provider module has no tags of its own and the
# root module's +incompatible release versions are refused, so the proxy cannot resolve the
# release itself). Verified for 4.25.0 in a git mirror of pulumi/pulumi-kubernetes:
# `git tag --points-at f47bc2d6f199` gives v4.25.0, and the proxy serves this pseudo-version.
# The provider's `replace .../sdk/v4 => ../sdk` is built against sdk/v4 at the same version (tag
# sdk/v4.25.0, commit 144dd813d53e, the release's generated SDK, a child of f47bc2d6f199).
# The toolchain refuses a pin with no entry here.
PULUMI_KUBERNETES_PROVIDER_COMMIT: dict[str, str] = {
    "4.25.0": "v4.0.0-20260115033456-f47bc2d6f199",
}
