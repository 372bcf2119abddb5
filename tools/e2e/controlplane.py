"""A real Kubernetes control plane on loopback for the e2e tests and for trying things by hand.

    python -m tools.e2e.controlplane up       # (make e2e-up)   start everything, write build/e2e/env.sh
    python -m tools.e2e.controlplane status   # what runs, on which ports; exit 1 if anything is down
    python -m tools.e2e.controlplane down     # (make e2e-down) stop everything, leave no process behind

What runs, all as host processes bound to 127.0.0.1, each built by tools/e2e/toolchain.py:
etcd, kube-apiserver (TLS, client certificates, RBAC), kube-controller-manager, kube-scheduler,
kwok (pretends to be the kubelets of the nodes it manages: nodes turn Ready, pods Running), the
KubeRay operator (out of cluster, with a kubeconfig; the chart's operator pod, when the platform
stack deploys it, is just another KWOK pod), Kueue the same way with the egress proxy that lets the
API server reach its webhooks (tools/e2e/kueue.py, tools/e2e/egress.py), and a static HTTP server for
the chart mirror (../shared/helm-repo). Certificates are made with `openssl`; nothing is downloaded.

Nodes are KWOK nodes shaped like the platform's pools (labels and taints from
components/constants.py): system nodes, CPU nodes, and GPU pools with `nvidia.com/gpu` capacity,
the GPU taint and the pool label.

State lives in build/e2e/ (pki/, logs/, etcd/, kubeconfig, state.json, env.sh, and state/ which
is the Pulumi file backend). `source build/e2e/env.sh` gives a shell with KUBECONFIG, the
toolchain on PATH, PULUMI_HOME/PULUMI_BACKEND_URL/PULUMI_CONFIG_PASSPHRASE and the mirror URL.

Deploying the `local` platform stack is the `deploy_platform()` hook below: today it applies the
KubeRay CRDs (../shared/kuberay-crds/v<KUBERAY_VERSION>) with kubectl so the operator can start;
once the program reads a chart mirror, it becomes `pulumi up` of the local stack (with the e2e
config layered on) and the CRD step goes, since the stack installs them.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import runpy
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tools.e2e import toolchain

REPO = toolchain.REPO
STATE_DIR = Path(os.environ.get("RAY_PLATFORM_E2E_STATE", REPO / "build" / "e2e")).resolve()
SHARED = (REPO.parent / "shared").resolve()
HELM_REPO = SHARED / "helm-repo"
# The passphrase the shipped local stacks (stacks/Pulumi.local.yaml, demo-local) are encrypted with.
PASSPHRASE = os.environ.get("RAY_PLATFORM_E2E_PASSPHRASE", "ray-platform-local")
CONTEXT = "ray-platform-e2e"
SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.244.0.1/16"  # kwok hands pod IPs out of it

_C = runpy.run_path(str(REPO / "components" / "constants.py"))
_V = runpy.run_path(str(REPO / "components" / "versions.py"))
KUBERAY_CRDS = SHARED / "kuberay-crds" / f"v{_V['KUBERAY_VERSION']}"

# The node pools KWOK pretends to run: (pool, count, cpu, memory, gpus per node, role label or None).
# GPU pools are named like the shipped stacks' gpuPools; a team's GPU group selects on the pool label.
# The CPU pool's nodes carry the CPU role, as an EKS platform's CPU pool does (Ray heads prefer it).
POOLS: list[tuple[str, int, str, str, int, str | None]] = [
    ("system", 2, "4", "16Gi", 0, _C["ROLE_SYSTEM"]),
    ("cpu", 2, "16", "64Gi", 0, _C["ROLE_CPU"]),
    ("g5-ondemand", 2, "8", "32Gi", 1, _C["ROLE_GPU"]),
    ("g5-12xlarge", 1, "48", "192Gi", 4, _C["ROLE_GPU"]),
]
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
KWOK_PORT_FORWARD = "PortForward"

# --------------------------------------------------------------------------- paths and state

PKI = STATE_DIR / "pki"
LOGS = STATE_DIR / "logs"
KUBECONFIG = STATE_DIR / "kubeconfig"
STATE_FILE = STATE_DIR / "state.json"
ENV_SH = STATE_DIR / "env.sh"
PULUMI_STATE = STATE_DIR / "state"
# The KubeRay operator's /etc/hosts (in_own_hosts): the cluster DNS names of the heads it must reach.
OPERATOR_HOSTS = STATE_DIR / "operator-hosts"


def log(msg: str) -> None:
    print(f"[e2e {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def load_state() -> dict:
    try:
        return json.loads(STATE_FILE.read_text())
    except (OSError, ValueError):
        return {"procs": {}, "ports": {}}


def save_state(state: dict) -> None:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = STATE_FILE.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(STATE_FILE)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def binary(name: str) -> str:
    if name == "kuberay-operator" and os.environ.get("RAY_PLATFORM_E2E_KUBERAY_OPERATOR"):
        # An operator binary given explicitly; `status` names it, so what ran is never mistaken
        # for the toolchain's.
        return os.environ["RAY_PLATFORM_E2E_KUBERAY_OPERATOR"]
    path = toolchain.bin_dir() / name
    if not path.exists():
        raise SystemExit(f"e2e: {path} is missing: run `make e2e-toolchain` "
                         f"(python -m tools.e2e.toolchain status shows what is built)")
    return str(path)


# --------------------------------------------------------------------------- certificates

def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_pki() -> None:
    make_front_proxy_pki()
    if (PKI / "admin.crt").exists():
        return
    PKI.mkdir(parents=True, exist_ok=True)
    p = lambda n: str(PKI / n)  # noqa: E731
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", p("ca.key"), "-out", p("ca.crt"),
             "-days", "3650", "-subj", "/CN=ray-platform-e2e-ca")
    sans = ("IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
            "DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local")
    certs = {
        "apiserver": ("/CN=kube-apiserver", f"subjectAltName={sans}\nextendedKeyUsage=serverAuth\n"),
        "admin": ("/O=system:masters/CN=kubernetes-admin", "extendedKeyUsage=clientAuth\n"),
    }
    for name, (subj, ext) in certs.items():
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", p(f"{name}.key"), "-out", p(f"{name}.csr"),
                 "-subj", subj)
        Path(p(f"{name}.ext")).write_text(ext)
        _openssl("x509", "-req", "-in", p(f"{name}.csr"), "-CA", p("ca.crt"), "-CAkey", p("ca.key"),
                 "-CAcreateserial", "-out", p(f"{name}.crt"), "-days", "3650", "-extfile", p(f"{name}.ext"))
    _openssl("genrsa", "-out", p("sa.key"), "2048")
    _openssl("rsa", "-in", p("sa.key"), "-pubout", "-out", p("sa.pub"))


def make_front_proxy_pki() -> None:
    """The aggregation layer's own CA and the client certificate the API server proxies to aggregated
    APIs (Kueue's visibility API) with, as kubeadm makes them: without it an aggregated API refuses the
    API server, and a namespace cannot be deleted while any API's discovery fails."""
    if (PKI / "front-proxy-client.crt").exists():
        return
    PKI.mkdir(parents=True, exist_ok=True)
    p = lambda n: str(PKI / n)  # noqa: E731
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", p("front-proxy-ca.key"),
             "-out", p("front-proxy-ca.crt"), "-days", "3650", "-subj", "/CN=front-proxy-ca")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", p("front-proxy-client.key"),
             "-out", p("front-proxy-client.csr"), "-subj", "/CN=front-proxy-client")
    Path(p("front-proxy-client.ext")).write_text("extendedKeyUsage=clientAuth\n")
    _openssl("x509", "-req", "-in", p("front-proxy-client.csr"), "-CA", p("front-proxy-ca.crt"),
             "-CAkey", p("front-proxy-ca.key"), "-CAcreateserial", "-out", p("front-proxy-client.crt"),
             "-days", "3650", "-extfile", p("front-proxy-client.ext"))


def write_kubeconfig(api_port: int) -> None:
    b64 = lambda n: base64.b64encode((PKI / n).read_bytes()).decode()  # noqa: E731
    cfg = {
        "apiVersion": "v1", "kind": "Config", "current-context": CONTEXT,
        "clusters": [{"name": "ray-platform-e2e", "cluster": {
            "server": f"https://127.0.0.1:{api_port}", "certificate-authority-data": b64("ca.crt")}}],
        "users": [{"name": "admin", "user": {
            "client-certificate-data": b64("admin.crt"), "client-key-data": b64("admin.key")}}],
        "contexts": [{"name": CONTEXT, "context": {"cluster": "ray-platform-e2e", "user": "admin"}}],
    }
    KUBECONFIG.write_text(json.dumps(cfg, indent=2) + "\n")  # JSON is YAML
    KUBECONFIG.chmod(0o600)


# --------------------------------------------------------------------------- API access

def _ssl() -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(PKI / "ca.crt"))
    ctx.load_cert_chain(str(PKI / "admin.crt"), str(PKI / "admin.key"))
    return ctx


def api(method: str, path: str, body: dict | None = None, *, port: int | None = None,
        content_type: str = "application/json", timeout: float = 10) -> dict:
    """One request to the API server as the admin; returns the decoded JSON (raises HTTPError)."""
    port = port or load_state()["ports"]["apiserver"]
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"https://127.0.0.1:{port}{path}", data=data, method=method,
                                 headers={"Content-Type": content_type, "Accept": "application/json"})
    with urllib.request.urlopen(req, context=_ssl(), timeout=timeout) as r:
        raw = r.read()
    try:
        return json.loads(raw)
    except ValueError:
        return {"raw": raw.decode(errors="replace")}


def kubectl(*args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([binary("kubectl"), "--kubeconfig", str(KUBECONFIG), *args], input=input,
                          capture_output=True, text=True, check=check)


def wait_for(what: str, ok, timeout: float = 120, every: float = 0.5):
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            res = ok()
            if res:
                return res
        except Exception as e:  # noqa: BLE001 - anything counts as "not yet"
            last = e
        time.sleep(every)
    raise SystemExit(f"e2e: timed out after {timeout:.0f}s waiting for {what}" + (f" ({last})" if last else ""))


# --------------------------------------------------------------------------- processes

def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _start_time(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _ours(entry: dict) -> bool:
    """The recorded pid is still the process we started (not a recycled pid)."""
    pid = entry["pid"]
    return _alive(pid) and _start_time(pid) == entry.get("start")


def is_up() -> bool:
    """A control plane is running from this state dir (someone's `make e2e-up`): use it as it is."""
    entry = load_state().get("procs", {}).get("kube-apiserver")
    return bool(entry) and _ours(entry)


def start(state: dict, name: str, argv: list[str], env: dict | None = None) -> None:
    entry = state["procs"].get(name)
    if entry and _ours(entry):
        log(f"{name}: already running (pid {entry['pid']})")
        return
    LOGS.mkdir(parents=True, exist_ok=True)
    logf = open(LOGS / f"{name}.log", "ab")
    proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            cwd=STATE_DIR, env=env or os.environ.copy(), start_new_session=True)
    logf.close()
    state["procs"][name] = {"pid": proc.pid, "start": _start_time(proc.pid), "argv": argv,
                            "log": str(LOGS / f"{name}.log")}
    save_state(state)
    log(f"{name}: started (pid {proc.pid}, log {LOGS / (name + '.log')})")


def check_running(state: dict, name: str) -> None:
    entry = state["procs"][name]
    if not _ours(entry):
        tail = "\n".join(Path(entry["log"]).read_text(errors="replace").splitlines()[-20:])
        raise SystemExit(f"e2e: {name} exited; the end of {entry['log']}:\n{tail}")


def stop(state: dict, name: str, grace: float = 15) -> None:
    entry = state["procs"].get(name)
    if not entry:
        return
    pid = entry["pid"]
    if _ours(entry):
        try:
            os.killpg(pid, signal.SIGTERM)  # its own session: the group is just it and its children
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + grace
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            log(f"{name}: still running after {grace:.0f}s, killing")
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            while _alive(pid):
                time.sleep(0.1)
        log(f"{name}: stopped (pid {pid})")
    del state["procs"][name]
    save_state(state)


# --------------------------------------------------------------------------- the components

ORDER = ["etcd", "egress", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok",
         "chart-mirror", "kueue", "kuberay-operator"]


def _ports(state: dict) -> dict:
    ports = state.setdefault("ports", {})
    for name in ("etcd", "etcd-peer", "apiserver", "controller-manager", "scheduler", "kwok",
                 "chart-mirror", "operator-metrics", "operator-probe"):
        ports.setdefault(name, free_port())
    save_state(state)
    return ports


def start_control_plane(state: dict) -> None:
    from tools.e2e import egress, kueue  # they read this module's paths and API access
    ports = _ports(state)
    pki = lambda n: str(PKI / n)  # noqa: E731
    (STATE_DIR / "etcd").mkdir(parents=True, exist_ok=True)
    etcd_url, peer_url = f"http://127.0.0.1:{ports['etcd']}", f"http://127.0.0.1:{ports['etcd-peer']}"
    start(state, "etcd", [
        binary("etcd"), "--name", "e2e", "--data-dir", str(STATE_DIR / "etcd"),
        "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
        "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
        "--initial-cluster", f"e2e={peer_url}", "--unsafe-no-fsync", "--quota-backend-bytes", "4294967296",
        "--log-level", "warn",
    ])
    wait_for("etcd", lambda: (check_running(state, "etcd"), urllib.request.urlopen(f"{etcd_url}/health", timeout=2)
                              .status == 200)[1], timeout=60)
    # Webhooks and aggregated APIs of host-process controllers (Kueue) are reached through it.
    start(state, "egress", [sys.executable, "-m", "tools.e2e.egress"], env=dict(os.environ, PYTHONPATH=str(REPO)))
    start(state, "kube-apiserver", [
        binary("kube-apiserver"), "--etcd-servers", etcd_url,
        "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--secure-port", str(ports["apiserver"]),
        "--tls-cert-file", pki("apiserver.crt"), "--tls-private-key-file", pki("apiserver.key"),
        "--client-ca-file", pki("ca.crt"),
        "--service-account-key-file", pki("sa.pub"), "--service-account-signing-key-file", pki("sa.key"),
        "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
        "--service-cluster-ip-range", SERVICE_CIDR, "--authorization-mode", "Node,RBAC",
        "--allow-privileged=true", "--enable-priority-and-fairness=false", "--profiling=false",
        "--endpoint-reconciler-type", "none", "--egress-selector-config-file", str(egress.write_config()),
        "--requestheader-client-ca-file", pki("front-proxy-ca.crt"), "--requestheader-allowed-names",
        "front-proxy-client", "--requestheader-username-headers", "X-Remote-User", "--requestheader-group-headers",
        "X-Remote-Group", "--requestheader-extra-headers-prefix", "X-Remote-Extra-",
        "--proxy-client-cert-file", pki("front-proxy-client.crt"), "--proxy-client-key-file", pki("front-proxy-client.key"),
        # Port-forward, logs and exec reach a node's "kubelet" (KWOK's server) at its InternalIP:
        # every KWOK node's Hostname address is its name, which nothing resolves.
        "--kubelet-preferred-address-types", "InternalIP",
    ])
    wait_for("kube-apiserver /readyz", lambda: (check_running(state, "kube-apiserver"),
                                                api("GET", "/readyz", port=ports["apiserver"]))[1], timeout=120)
    write_kubeconfig(ports["apiserver"])
    common = ["--kubeconfig", str(KUBECONFIG), "--authentication-kubeconfig", str(KUBECONFIG),
              "--authorization-kubeconfig", str(KUBECONFIG), "--leader-elect=false", "--bind-address", "127.0.0.1"]
    start(state, "kube-controller-manager", [
        binary("kube-controller-manager"), *common, "--secure-port", str(ports["controller-manager"]),
        "--service-account-private-key-file", pki("sa.key"), "--root-ca-file", pki("ca.crt"),
        "--cluster-signing-cert-file", pki("ca.crt"), "--cluster-signing-key-file", pki("ca.key"),
        "--use-service-account-credentials=false", "--service-cluster-ip-range", SERVICE_CIDR,
        "--controllers", "*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-node-route-controller",
    ])
    start(state, "kube-scheduler", [
        binary("kube-scheduler"), *common, "--secure-port", str(ports["scheduler"]),
    ])
    stages = kueue.kwok_stages(toolchain.kwok_stages())
    # KWOK's PortForward objects (tools/e2e/ray_heads.py makes them) are read from the API server.
    kubectl("apply", "--server-side", "-f", str(toolchain.kwok_crds()))
    start(state, "kwok", [
        binary("kwok"), "--kubeconfig", str(KUBECONFIG), "--config", str(stages),
        "--manage-all-nodes=false", f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake",
        "--cidr", POD_CIDR, "--node-ip", "127.0.0.1",
        "--node-lease-duration-seconds", "40",
        # KWOK's kubelet API (port-forward, logs), served with TLS as the API server expects of a
        # kubelet, on the port every node advertises (its daemonEndpoints, set by create_nodes).
        "--server-address", f"127.0.0.1:{ports['kwok']}", "--node-port", str(ports["kwok"]),
        "--tls-cert-file", pki("apiserver.crt"), "--tls-private-key-file", pki("apiserver.key"),
        "--enable-crds", KWOK_PORT_FORWARD,
    ])
    for name in ("kube-controller-manager", "kube-scheduler", "kwok"):
        wait_for(f"{name} to stay up", lambda n=name: (check_running(state, n), True)[1], timeout=5)


def node_objects() -> list[dict]:
    out = []
    for pool, count, cpu, mem, gpus, role in POOLS:
        for i in range(count):
            labels = {_C["NODE_POOL_LABEL"]: pool, "type": "kwok",
                      "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}
            if role:
                labels[_C["NODE_ROLE_LABEL"]] = role
            taints = []
            capacity = {"cpu": cpu, "memory": mem, "pods": "110", "ephemeral-storage": "100Gi"}
            if gpus:
                labels[_C["GPU_NODE_LABEL"]] = "true"
                capacity[_C["GPU_RESOURCE"]] = str(gpus)
                taints.append({"key": _C["GPU_TAINT_KEY"], "value": _C["GPU_TAINT_VALUE"],
                               "effect": _C["GPU_TAINT_EFFECT"]})
            name = f"kwok-{pool}-{i}"
            labels["kubernetes.io/hostname"] = name
            out.append({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": labels, "annotations": {KWOK_ANNOTATION: "fake"}},
                "spec": {"taints": taints} if taints else {},
                "status": {"capacity": capacity, "allocatable": capacity,
                           "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux",
                                        "kubeletVersion": toolchain.pins()["kubernetes"]}},
            })
    return out


def create_nodes() -> None:
    for node in node_objects():
        try:
            api("POST", "/api/v1/nodes", node)
            log(f"node {node['metadata']['name']} created")
        except urllib.error.HTTPError as e:
            if e.code != 409:
                raise
            # Kept from an earlier `up` (etcd data stays): bring labels and taints to today's shape.
            labels = {k: None for k in (_C["NODE_ROLE_LABEL"], _C["GPU_NODE_LABEL"])} | node["metadata"]["labels"]
            api("PATCH", f"/api/v1/nodes/{node['metadata']['name']}",
                {"metadata": {"labels": labels}, "spec": {"taints": node["spec"].get("taints")}},
                content_type="application/merge-patch+json")
        # KWOK sets the kubelet port only when it initializes a node: a node kept from an earlier
        # `up` would still point the API server at that run's port.
        api("PATCH", f"/api/v1/nodes/{node['metadata']['name']}/status",
            {"status": {"daemonEndpoints": {"kubeletEndpoint": {"Port": load_state()["ports"]["kwok"]}}}},
            content_type="application/merge-patch+json")
    names = {n["metadata"]["name"] for n in node_objects()}

    def all_ready():
        ready = {n["metadata"]["name"] for n in api("GET", "/api/v1/nodes")["items"]
                 if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions", []))}
        return names <= ready
    wait_for("KWOK nodes Ready", all_ready, timeout=120)
    log(f"{len(names)} KWOK nodes Ready")


def start_mirror(state: dict) -> str:
    port = state["ports"]["chart-mirror"]
    if not (HELM_REPO / "index.yaml").exists():
        raise SystemExit(f"e2e: no chart mirror at {HELM_REPO} (index.yaml)")
    start(state, "chart-mirror", [sys.executable, "-m", "http.server", "--bind", "127.0.0.1",
                                  "--directory", str(HELM_REPO), str(port)])
    url = mirror_url(state)
    wait_for("chart mirror", lambda: urllib.request.urlopen(f"{url}/index.yaml", timeout=2).status == 200, timeout=30)
    return url


def apply_kuberay_crds() -> None:
    """Server-side apply of the KubeRay CRDs, then wait until each is Established."""
    if not KUBERAY_CRDS.is_dir():
        raise SystemExit(f"e2e: no KubeRay CRDs at {KUBERAY_CRDS}")
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(KUBERAY_CRDS))
    kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(KUBERAY_CRDS))
    log(f"KubeRay CRDs from {KUBERAY_CRDS} established")


def mirror_url(state: dict) -> str:
    return f"http://127.0.0.1:{state['ports']['chart-mirror']}"


def deploy_platform(state: dict) -> None:
    """What the cluster gets before the operator starts: the `local` platform stack, deployed by
    the real `pulumi up` (its CRDs from the mirror, its charts from the chart mirror)."""
    from tools.e2e import stacks  # it drives the CLI with this module's settings
    t0 = time.monotonic()
    stacks.up(state, stacks.PLATFORM_STACK)
    kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(KUBERAY_CRDS))
    log(f"platform stack `{stacks.PLATFORM_STACK}` deployed by pulumi up in {time.monotonic() - t0:.0f}s")


def in_own_hosts(argv: list[str]) -> list[str]:
    """`argv` run in a mount namespace of its own whose /etc/hosts is OPERATOR_HOSTS (bind-mounted).

    The operator reaches a Ray head at `<head Service>.<namespace>.svc.cluster.local`, which nothing
    on this machine resolves; tools/e2e/ray_heads.py writes those names into OPERATOR_HOSTS, each with
    the loopback address it serves that head on. The binary is built with CGO_ENABLED=0: Go's own
    resolver reads /etc/hosts (nsswitch `hosts: files dns`) and reloads it when it changes (within
    5 s), so the file is rewritten in place, never replaced (a bind mount holds the inode). `unshare`
    execs the command in its own pid, so the recorded pid is the operator's. Without root, a user
    namespace maps this user to root inside, which may mount there.
    """
    user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    return ["unshare", "--mount", "--propagation", "private", *user, "--",
            "sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"', str(OPERATOR_HOSTS), *argv]


def set_operator_host(name: str, address: str | None) -> None:
    """Resolve `name` to `address` in the operator's /etc/hosts (None: forget it), in place."""
    import fcntl
    with open(OPERATOR_HOSTS, "a+") as f:  # none yet when the operator was not started
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        lines = [line for line in f.read().splitlines() if line.split("#", 1)[0].split()[1:] != [name]]
        if address is not None:
            lines.append(f"{address} {name}")
        f.seek(0)
        f.truncate()
        f.write("\n".join(lines) + "\n")


def start_operator(state: dict) -> None:
    ports = state["ports"]
    env = dict(os.environ, KUBECONFIG=str(KUBECONFIG))
    # This machine's own entries (localhost), then the heads' as they come.
    OPERATOR_HOSTS.write_text(Path("/etc/hosts").read_text())
    start(state, "kuberay-operator", in_own_hosts([
        binary("kuberay-operator"), "--enable-leader-election=false",
        "--metrics-addr", f"127.0.0.1:{ports['operator-metrics']}",
        "--health-probe-bind-address", f"127.0.0.1:{ports['operator-probe']}",
        "--log-stdout-encoder", "console",
    ]), env=env)
    probe = f"http://127.0.0.1:{ports['operator-probe']}/readyz"
    wait_for("KubeRay operator /readyz", lambda: (check_running(state, "kuberay-operator"),
                                                  urllib.request.urlopen(probe, timeout=2).status == 200)[1],
             timeout=90)
    explicit = bool(os.environ.get("RAY_PLATFORM_E2E_KUBERAY_OPERATOR"))
    state["operator"] = {"binary": binary("kuberay-operator"), "hosts": str(OPERATOR_HOSTS),
                         "version": "given" if explicit else _V["KUBERAY_E2E_OPERATOR_VERSION"],
                         "deployed-by-platform": _V["KUBERAY_VERSION"], "explicit": explicit,
                         "note": operator_note(explicit)}
    save_state(state)
    log(state["operator"]["note"])


def operator_note(explicit: bool) -> str:
    """Which KubeRay operator runs, in one line (status, `up` and the e2e test summary print it)."""
    if explicit:
        return (f"KubeRay operator {os.environ['RAY_PLATFORM_E2E_KUBERAY_OPERATOR']} given by "
                f"RAY_PLATFORM_E2E_KUBERAY_OPERATOR (the platform deploys v{_V['KUBERAY_VERSION']})")
    return toolchain.kuberay_stand_in() or f"KubeRay operator v{_V['KUBERAY_E2E_OPERATOR_VERSION']}"


def env_exports(state: dict) -> dict[str, str]:
    tc = toolchain.env_exports()
    return {
        "KUBECONFIG": str(KUBECONFIG),
        "PATH": f"{toolchain.bin_dir()}:$PATH",
        "PULUMI_HOME": tc["PULUMI_HOME"],
        "PULUMI_BACKEND_URL": f"file://{PULUMI_STATE}",
        "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "RAY_PLATFORM_CHART_MIRROR": mirror_url(state),
        "RAY_PLATFORM_E2E_STATE": str(STATE_DIR),
    }


def write_env_sh(state: dict) -> None:
    PULUMI_STATE.mkdir(parents=True, exist_ok=True)
    lines = ["# Written by `make e2e-up` (tools/e2e/controlplane.py); `source` it. Undone by `make e2e-down`."]
    for k, v in env_exports(state).items():
        lines.append(f'export {k}="{v}"' if k == "PATH" else f"export {k}={toolchain._shq(v)}")
    ENV_SH.write_text("\n".join(lines) + "\n")


# --------------------------------------------------------------------------- commands

def up(args: argparse.Namespace) -> int:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    state = load_state()
    make_pki()
    start_control_plane(state)
    create_nodes()
    mirror = start_mirror(state)
    write_env_sh(state)
    from tools.e2e import kueue
    kueue.start(state)  # idle until the platform stack installs Kueue's chart
    if args.no_platform:
        apply_kuberay_crds()
    else:
        deploy_platform(state)
    rc = 0
    if args.no_operator:
        log("KubeRay operator not started (--no-operator)")
    elif operator_missing():
        log(f"KubeRay operator NOT started: {operator_missing()}")
        rc = 1
    else:
        start_operator(state)
    log(f"up in {time.monotonic() - t0:.1f}s; chart mirror {mirror}")
    log(f"source {ENV_SH}   # then kubectl get nodes, pulumi ...; `make e2e-down` stops it all")
    return rc


def operator_missing() -> str:
    """Why the operator cannot start ("" if it can): the toolchain's build is missing and none was given."""
    if os.environ.get("RAY_PLATFORM_E2E_KUBERAY_OPERATOR"):
        return ""
    if (toolchain.bin_dir() / "kuberay-operator").exists():
        return ""
    why = toolchain.load_manifest().get("tools", {}).get("kuberay", {}).get("error", "not built")
    return (f"no kuberay-operator {_V['KUBERAY_E2E_OPERATOR_VERSION']} in the toolchain ({why.splitlines()[0]}); "
            "RAY_PLATFORM_E2E_KUBERAY_OPERATOR=<binary> runs a given one")


def down(_args: argparse.Namespace) -> int:
    state = load_state()
    for name in reversed(ORDER):
        stop(state, name)
    for name in list(state.get("procs", {})):
        stop(state, name)
    left = [f"{n} (pid {e['pid']})" for n, e in load_state().get("procs", {}).items() if _alive(e["pid"])]
    if left:
        log(f"still running: {', '.join(left)}")
        return 1
    # Data (etcd, certs, pulumi state) is kept: `make clean` removes build/. The env file goes,
    # so nobody sources a dead cluster's settings.
    ENV_SH.unlink(missing_ok=True)
    state["ports"] = {}
    state.pop("operator", None)
    save_state(state)
    log("down: no e2e process left")
    return 0


def status(_args: argparse.Namespace) -> int:
    state = load_state()
    rc = 0
    for name in ORDER:
        entry = state.get("procs", {}).get(name)
        running = bool(entry) and _ours(entry)
        rc |= 0 if running else 1
        print(f"  {name:24} {'running, pid ' + str(entry['pid']) if running else 'not running'}")
    if state.get("ports"):
        print(f"  ports: {json.dumps(state['ports'])}")
    if state.get("operator"):
        print(f"  operator: {json.dumps(state['operator'])}")
        print(f"  {state['operator']['note']}")
    if ENV_SH.exists():
        print(f"  source {ENV_SH}")
    return rc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.e2e.controlplane", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    u = sub.add_parser("up", help="start the control plane, KWOK nodes, chart mirror and KubeRay operator")
    u.add_argument("--no-platform", action="store_true",
                   help="apply the KubeRay CRDs with kubectl instead of deploying the `local` platform stack")
    u.add_argument("--no-operator", action="store_true", help="do not start the KubeRay operator")
    sub.add_parser("down", help="stop everything started by `up`")
    sub.add_parser("status", help="what runs (exit 1 if anything is down)")
    a = ap.parse_args(argv)
    if a.cmd == "up":
        try:
            return up(a)
        except BaseException:
            log("up failed: the processes started so far keep running; `make e2e-down` stops them")
            raise
    return {"down": down, "status": status}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
