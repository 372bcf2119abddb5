"""The jobs/ code archive a `submission: kuberay` job names in `kuberay.codeUri`, served over HTTPS.

KubeRay cannot upload a checkout: a RayJob's or RayService's code is a remote .zip whose single
top-level directory holds jobs/ (what CI publishes: `git archive --prefix=ray-platform-jobs/ ...
jobs`), which Ray downloads and unpacks as the job's working_dir. `jobs_archive` builds that archive
from the checkout; `CodeServer` serves a directory of archives at `https://127.0.0.1:<port>/`, with a
certificate from the e2e control plane's CA, so an `https://` codeUri passes the config check and
Ray's own download path (smart_open over requests) fetches it. A local Ray head trusts that CA when
started with `CodeServer.head_env()` (REQUESTS_CA_BUNDLE).

    with CodeServer(directory) as code:
        uri = code.url(jobs_archive(directory).name)
"""
from __future__ import annotations

import functools
import http.server
import ssl
import threading
import zipfile
from pathlib import Path
from types import TracebackType

from jobs.common import JOBS_DIR
from tools.e2e import controlplane as cp

ARCHIVE_TOP = "ray-platform-jobs"


def jobs_archive(directory: Path, name: str = "jobs-test.zip") -> Path:
    """The code archive CI publishes (`git archive --prefix=ray-platform-jobs/ HEAD jobs`), as `directory/name`."""
    path = directory / name
    with zipfile.ZipFile(path, "w") as archive:
        for source in sorted(JOBS_DIR.rglob("*.py")):
            archive.write(source, f"{ARCHIVE_TOP}/jobs/{source.relative_to(JOBS_DIR).as_posix()}")
    return path


def server_certificate() -> tuple[Path, Path]:
    """(certificate, key) for 127.0.0.1, signed by the control plane's CA (made once, beside it)."""
    crt, key = cp.PKI / "code-server.crt", cp.PKI / "code-server.key"
    if not crt.exists():
        cp.make_pki()
        p = lambda n: str(cp.PKI / n)  # noqa: E731
        cp._openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", p("code-server.key"),
                    "-out", p("code-server.csr"), "-subj", "/CN=ray-platform-e2e-code")
        (cp.PKI / "code-server.ext").write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
        cp._openssl("x509", "-req", "-in", p("code-server.csr"), "-CA", p("ca.crt"), "-CAkey", p("ca.key"),
                    "-CAcreateserial", "-out", p("code-server.crt"), "-days", "3650", "-extfile", p("code-server.ext"))
    return crt, key


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *_args: object) -> None:
        """No request log on the test's output."""


class CodeServer:
    """An HTTPS static file server for `directory` on 127.0.0.1 (a free port), in a thread."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                       functools.partial(_Quiet, directory=str(directory)))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*map(str, server_certificate()))
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, name="e2e-code-server", daemon=True)

    def __enter__(self) -> CodeServer:
        self._thread.start()
        return self

    def __exit__(self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()

    def url(self, name: str) -> str:
        return f"https://127.0.0.1:{self._server.server_address[1]}/{name}"

    @staticmethod
    def head_env() -> dict[str, str]:
        """What a Ray head needs to download from here: requests (smart_open's HTTP) trusting the e2e CA."""
        return {"REQUESTS_CA_BUNDLE": str(cp.PKI / "ca.crt")}
