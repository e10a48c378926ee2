"""The egress policy of a one-machine test installation: its backends are on loopback."""

from __future__ import annotations

import ipaddress

from certward.egress import EgressPolicy

LOCAL_POLICY = EgressPolicy(
    allowed_networks=(ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
)
"""Opens loopback (where the test upstreams run) and nothing else."""
