"""The API server's road into the e2e "cluster network", for controllers that run out of cluster.

In a real cluster the API server reaches an admission webhook, a CRD conversion webhook or an
aggregated API through its Service: ClusterIP -> kube-proxy -> the controller's pod. Here the
controller (Kueue) is a host process and its pod a KWOK stand-in, and nothing routes ClusterIPs.
So the API server is started with an egress selector (`--egress-selector-config-file`, the
mechanism of konnectivity) that sends its "cluster" traffic through this HTTP CONNECT proxy on a
Unix socket. The proxy passes every connection through unchanged, except one to the ClusterIP of a
Service listed in the routes file, which it connects to the host address listed there. The
webhook configurations, CRDs and APIServices stay exactly as their chart made them (Service
references, caBundle injected by the controller itself), and so does every admission decision.

    python -m tools.e2e.egress   # started by `controlplane up` (tools/e2e/controlplane.py)

Routes: build/e2e/egress-routes.json, {"<namespace>/<service>:<port>": "127.0.0.1:<port>"},
written by whoever runs the controller (tools/e2e/kueue.py) and read on every connection.
"""
from __future__ import annotations

import ipaddress
import json
import os
import socket
import socketserver
import sys
import threading
import time
from pathlib import Path

from tools.e2e import controlplane as cp

SOCKET = cp.STATE_DIR / "egress.sock"
CONFIG = cp.STATE_DIR / "egress-selector.yaml"
ROUTES = cp.STATE_DIR / "egress-routes.json"
# How long a Service lookup is reused: Services come and go with the stacks, not per connection.
CACHE_S = 2.0


def write_config() -> Path:
    """The API server's EgressSelectorConfiguration: "cluster" traffic through this proxy."""
    CONFIG.write_text(json.dumps({
        "apiVersion": "apiserver.k8s.io/v1beta1", "kind": "EgressSelectorConfiguration",
        "egressSelections": [{"name": "cluster", "connection": {
            "proxyProtocol": "HTTPConnect", "transport": {"uds": {"udsName": str(SOCKET)}}}}],
    }, indent=2) + "\n")
    return CONFIG


def set_route(service: str, port: int, target: str) -> None:
    """Route `<namespace>/<name>` port `port` to `target` (host:port); atomic for the readers."""
    routes = load_routes()
    routes[f"{service}:{port}"] = target
    tmp = ROUTES.with_suffix(".tmp")
    tmp.write_text(json.dumps(routes, indent=2) + "\n")
    tmp.replace(ROUTES)


def load_routes() -> dict[str, str]:
    try:
        return json.loads(ROUTES.read_text())
    except (OSError, ValueError):
        return {}


class _Services:
    """ClusterIP:port -> "<namespace>/<name>:<port>", from the API server, briefly cached."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.at = 0.0
        self.by_ip: dict[str, str] = {}

    def name(self, ip: str) -> str | None:
        with self.lock:
            if time.monotonic() - self.at > CACHE_S or ip not in self.by_ip:
                items = cp.api("GET", "/api/v1/services")["items"]
                self.by_ip = {s["spec"].get("clusterIP", ""): f"{s['metadata']['namespace']}/{s['metadata']['name']}"
                              for s in items}
                self.at = time.monotonic()
            return self.by_ip.get(ip)


SERVICES = _Services()
SERVICE_NET = ipaddress.ip_network(cp.SERVICE_CIDR)


def target(host: str, port: int) -> tuple[str, int] | None:
    """Where a CONNECT to host:port goes: a routed Service's host address, None for a Service
    nothing serves (as in a cluster: no endpoint), else host:port itself (nodes, kubelets)."""
    try:
        in_services = ipaddress.ip_address(host) in SERVICE_NET
    except ValueError:
        in_services = False
    if not in_services:
        return host, port
    name = SERVICES.name(host)
    routed = load_routes().get(f"{name}:{port}") if name else None
    if routed is None:
        return None
    to_host, _, to_port = routed.rpartition(":")
    return to_host, int(to_port)


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(socketserver.StreamRequestHandler):
    # Unbuffered: the request's head is read line by line and nothing after it is held back, so
    # what the client sends once connected (TLS speaks first) goes straight to the socket pump.
    rbufsize = 0

    def handle(self) -> None:
        request = self.rfile.readline().decode("latin-1").split()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass  # headers: nothing in them matters here
        if len(request) < 2 or request[0] != "CONNECT":
            self.wfile.write(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
            return
        host, _, port = request[1].rpartition(":")
        try:
            where = target(host.strip("[]"), int(port))
        except Exception as e:  # noqa: BLE001 - the API server only learns "refused"
            self.wfile.write(f"HTTP/1.1 502 Bad Gateway\r\n\r\nlookup failed: {e}".encode())
            return
        if where is None:
            self.wfile.write(f"HTTP/1.1 503 Service Unavailable\r\n\r\nno route to {request[1]}".encode())
            return
        try:
            upstream = socket.create_connection(where, timeout=10)
        except OSError as e:
            self.wfile.write(f"HTTP/1.1 502 Bad Gateway\r\n\r\n{where}: {e}".encode())
            return
        upstream.settimeout(None)
        self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        self.wfile.flush()
        back = threading.Thread(target=_pump, args=(upstream, self.connection), daemon=True)
        back.start()
        _pump(self.connection, upstream)
        back.join()


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def main() -> int:
    SOCKET.unlink(missing_ok=True)
    with _Server(str(SOCKET), _Handler) as server:
        os.chmod(SOCKET, 0o600)
        print(f"egress proxy on {SOCKET}, routes from {ROUTES}", flush=True)
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
