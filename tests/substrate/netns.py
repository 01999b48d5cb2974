"""Separate "hosts" on one machine: a network namespace per host, veth pairs and a bridge.

Each host gets ``eth0`` with an address in a private /24; the root namespace holds the bridge
(with the ``.254`` address, so the test itself can reach the hosts, like an operator's laptop).
:meth:`Network.cut` takes a host's link down (packets vanish, connections hang, as on a real
partition); :meth:`Network.heal` brings it back. :meth:`Network.close` deletes everything.
"""
from __future__ import annotations

import os
import random
import secrets
import shutil
import subprocess
from typing import Sequence


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check,
                          timeout=30)


def unavailable() -> str:
    """Empty when namespaces can be made here, else why not (for ``pytest.skip``)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 ('ip') is not installed"
    probe = f"opprobe{secrets.token_hex(3)}"
    result = _ip("netns", "add", probe, check=False)
    if result.returncode != 0:
        return f"'ip netns add' failed: {result.stderr.strip()}"
    _ip("netns", "delete", probe, check=False)
    return ""


class Network:
    """Hosts named by ``names``, each in its own namespace on one bridge."""

    def __init__(self, names: Sequence[str]) -> None:
        self.tag = f"op{secrets.token_hex(2)}"
        self.bridge = f"{self.tag}br"
        taken = _ip("-4", "route").stdout
        for _ in range(50):
            subnet = f"10.213.{random.randrange(1, 254)}"
            if f"{subnet}.0/24" not in taken:
                break
        self.subnet = subnet
        self.hosts = {name: i for i, name in enumerate(names)}
        self._made_ns: list[str] = []
        self._made_links: list[str] = []

    def ns(self, host: str) -> str:
        """The namespace name of ``host``."""
        return f"{self.tag}-{host}"

    def addr(self, host: str) -> str:
        """The IPv4 address of ``host``."""
        return f"{self.subnet}.{self.hosts[host] + 1}"

    def _veth(self, host: str) -> str:
        return f"{self.tag}v{self.hosts[host]}"

    def open(self) -> "Network":
        _ip("link", "add", self.bridge, "type", "bridge")
        self._made_links.append(self.bridge)
        _ip("addr", "add", f"{self.subnet}.254/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for host, i in self.hosts.items():
            ns, outer, inner = self.ns(host), self._veth(host), f"{self.tag}p{i}"
            _ip("netns", "add", ns)
            self._made_ns.append(ns)
            _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
            self._made_links.append(outer)
            _ip("link", "set", inner, "netns", ns)
            _ip("link", "set", outer, "master", self.bridge, "up")
            _ip("-n", ns, "link", "set", inner, "name", "eth0")
            _ip("-n", ns, "addr", "add", f"{self.addr(host)}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        return self

    def cut(self, host: str) -> None:
        """Take ``host`` off the network (its end of the wire goes down)."""
        _ip("link", "set", self._veth(host), "down")

    def heal(self, host: str) -> None:
        """Put ``host`` back on the network."""
        _ip("link", "set", self._veth(host), "up")

    def command(self, host: str, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside ``host``'s namespace."""
        return ["ip", "netns", "exec", self.ns(host), *argv]

    def close(self) -> None:
        """Delete every namespace and link this network made (idempotent)."""
        for ns in self._made_ns:
            _ip("netns", "delete", ns, check=False)
        for link in reversed(self._made_links):
            _ip("link", "delete", link, check=False)   # gone with its namespace already: fine
        self._made_ns.clear()
        self._made_links.clear()

    def leftovers(self) -> list[str]:
        """Namespaces and links of this network that still exist (empty after :meth:`close`)."""
        names = _ip("netns", "list").stdout + _ip("link", "show").stdout
        return sorted({w.split("@")[0].rstrip(":") for w in names.split()
                       if w.startswith(self.tag)})
