"""The KubeRay operator's own /etc/hosts (tools/e2e/controlplane.py): how it is run, how the file is written.

Not marked e2e (no control plane, no Go): part of `make test`. That the bind mount and Go's resolver
work is shown by tests/e2e/test_kuberay_jobs.py, where the operator reaches the heads by name.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tools.e2e import controlplane as cp


@pytest.fixture
def hosts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "operator-hosts"
    path.write_text("127.0.0.1 localhost\n")
    monkeypatch.setattr(cp, "OPERATOR_HOSTS", path)
    return path


def test_names_are_added_replaced_and_removed_in_place(hosts: Path) -> None:
    inode = hosts.stat().st_ino
    cp.set_operator_host("a-head-svc.team-x.svc.cluster.local", "127.77.0.1")
    cp.set_operator_host("b-head-svc.team-x.svc.cluster.local", "127.77.0.2")
    cp.set_operator_host("a-head-svc.team-x.svc.cluster.local", "127.77.0.3")
    assert hosts.read_text() == ("127.0.0.1 localhost\n127.77.0.2 b-head-svc.team-x.svc.cluster.local\n"
                                 "127.77.0.3 a-head-svc.team-x.svc.cluster.local\n")
    cp.set_operator_host("b-head-svc.team-x.svc.cluster.local", None)
    assert hosts.read_text() == "127.0.0.1 localhost\n127.77.0.3 a-head-svc.team-x.svc.cluster.local\n"
    # Rewritten, never replaced: the operator's bind mount holds this inode.
    assert hosts.stat().st_ino == inode


def test_the_operator_runs_in_its_own_mount_namespace_over_that_file(hosts: Path) -> None:
    argv = cp.in_own_hosts(["/bin/kuberay-operator", "--flag"])
    assert argv[:4] == ["unshare", "--mount", "--propagation", "private"]
    # `unshare` execs: the recorded pid stays the operator's, and its argv ends as given.
    shell = argv.index("sh")
    assert argv[shell:shell + 2] == ["sh", "-c"] and "exec \"$@\"" in argv[shell + 2]
    assert argv[shell + 3:] == [str(hosts), "/bin/kuberay-operator", "--flag"]
