"""The VPC's subnet layout (components/platform/network.py)."""
from __future__ import annotations

import ipaddress

import pytest

from components.platform.network import subnet_cidrs


@pytest.mark.parametrize(("cidr", "azs"), [("10.0.0.0/16", 2), ("10.0.0.0/16", 6), ("172.16.0.0/20", 3)])
def test_subnets_are_disjoint_and_inside_the_vpc(cidr: str, azs: int) -> None:
    private, public = subnet_cidrs(cidr, azs)
    nets = [ipaddress.ip_network(c) for c in private + public]
    assert len(private) == len(public) == azs
    vpc = ipaddress.ip_network(cidr)
    assert all(n.subnet_of(vpc) for n in nets)
    assert not any(a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1:])
    assert all(ipaddress.ip_network(p).num_addresses > ipaddress.ip_network(q).num_addresses
               for p, q in zip(private, public)), "pods take private addresses: private subnets are larger"
