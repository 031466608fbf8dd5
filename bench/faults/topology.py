"""Where the daemons live, and what the network does to them.

With namespaces (tests/netns.py: one per node, a bridge between them, 192.0.2.0/24), each
node's namespace gets one nftables table (Debian's ``nft``) whose rules the faults change:
a set of addresses the node neither hears nor reaches (a partition: both sides' sets hold
the other side), a set it does not hear (a one-way cut) and a chain of random loss on its
``eth0`` (``numgen random mod 100 < N drop``). The loopback device is never touched (the
local API is reached there). A node's line rate is a token bucket (``tc tbf``, netns.py's
``shape``). The kernels here have no ``sch_netem``, so neither latency, jitter nor
reordering is made (that would take a delaying relay of our own; not done).

Without namespaces (not permitted, ``ip`` missing, or ``--loopback``) every daemon listens
on 127.0.0.1 and the network faults are skipped, each with the reason in the history.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence

from netns import Network, NotPermitted, missing_tools

TABLE = "cp2pfault"
_RULES = f"""
table inet {TABLE} {{
  set cut {{ type ipv4_addr; }}
  set deaf {{ type ipv4_addr; }}
  chain loss {{ }}
  chain input {{
    type filter hook input priority 0; policy accept;
    ip saddr @cut drop
    ip saddr @deaf drop
    jump loss
  }}
  chain output {{
    type filter hook output priority 0; policy accept;
    ip daddr @cut drop
  }}
}}
"""


def namespaces_unavailable() -> str:
    """Why daemons cannot be put in namespaces here, or "" when they can (a probe
    namespace is made and deleted)."""
    missing = missing_tools("ip")
    if missing:
        return missing
    probe = Network(f"cpfprobe{os.getpid()}")
    try:
        probe.start()
    except NotPermitted as exc:
        return f"network namespaces are not permitted here (ip netns add: {exc})"
    finally:
        probe.close()
    return ""


class Topology:
    """The daemons' network: ``netns`` (shaped, with nftables) or ``loopback``."""

    def __init__(self, names: Sequence[str], *, loopback: bool = False, tag: str = "") -> None:
        self.names = list(names)
        self.tag = tag or f"cpf{os.getpid()}"
        self.net: Network | None = None
        self.addrs: dict[str, str] = {}
        self.prefixes: dict[str, list[str]] = {}
        self.nft = shutil.which("nft") is not None
        self.why_no_nft = "" if self.nft else "nft (Debian's nftables) is not installed"
        self.why_loopback = "asked for (--loopback)" if loopback else ""

    @property
    def mode(self) -> str:
        return "netns" if self.net is not None else "loopback"

    def start(self) -> None:
        if not self.why_loopback:
            self.why_loopback = missing_tools("ip") or ""
        if not self.why_loopback:
            net = Network(self.tag)
            try:
                net.start()
            except NotPermitted as exc:
                net.close()
                self.why_loopback = f"network namespaces are not permitted here ({exc})"
            else:
                self.net = net
        for i, name in enumerate(self.names):
            if self.net is None:
                self.prefixes[name], self.addrs[name] = [], "127.0.0.1"
                continue
            self.prefixes[name], self.addrs[name] = self.net.attach(name, i + 1)
            if self.nft:
                try:
                    self._nft(name, "-f", "-", stdin=_RULES)
                except RuntimeError as exc:
                    # installed, but the kernel (a container's, say) has no nf_tables:
                    # partitions fall back to ports taken down, as without nft
                    self.nft, self.why_no_nft = False, f"nft cannot filter here ({exc})"

    def listen(self, name: str) -> list[str]:
        return [f"/ip4/{self.addrs[name]}/tcp/0"]

    # --- what the faults call; each returns "" when done, else why it was not --------

    def can_filter(self) -> str:
        if self.net is None:
            return f"no namespaces ({self.why_loopback})"
        if not self.nft:
            return self.why_no_nft
        return ""

    def partition(self, groups: Sequence[Sequence[str]]) -> str:
        """Every node hears and reaches only the nodes of its own group."""
        if self.net is not None and not self.nft:
            # without nft, a port down cuts a node off from everyone: the groups but the
            # largest are cut off whole (each of their nodes alone)
            largest = max(groups, key=len)
            for group in groups:
                if group is not largest:
                    for name in group:
                        self.net.cut(name)
            return ""
        why = self.can_filter()
        if why:
            return why
        for group in groups:
            others = [self.addrs[n] for g in groups if g is not group for n in g]
            for name in group:
                self._set(name, "cut", others)
        return ""

    def one_way(self, deaf: str, to: Sequence[str]) -> str:
        """``deaf`` stops hearing ``to`` (they still hear it)."""
        why = self.can_filter()
        if not why:
            self._set(deaf, "deaf", [self.addrs[n] for n in to])
        return why

    def heal(self) -> str:
        if self.net is None:
            return f"no namespaces ({self.why_loopback})"
        for name in self.names:
            self.net.heal(name)  # a port cut when there was no nft
            if self.nft:
                self._set(name, "cut", [])
                self._set(name, "deaf", [])
        return ""

    def loss(self, name: str, percent: int) -> str:
        why = self.can_filter()
        if why:
            return why
        self._nft(name, "flush", "chain", "inet", TABLE, "loss")
        if percent > 0:
            rule = ["iifname", "eth0", "numgen", "random", "mod", "100", "<", str(percent), "drop"]
            self._nft(name, "add", "rule", "inet", TABLE, "loss", *rule)
        return ""

    def bandwidth(self, name: str, mbit: float) -> str:
        if self.net is None:
            return f"no namespaces ({self.why_loopback})"
        if mbit > 0:
            self.net.shape(name, mbit)
        else:
            for ns, dev in (
                (self.net.namespace(name), "eth0"),
                (self.net.switch, self.net.ports[name]),
            ):
                subprocess.run(
                    ["tc", "-n", ns, "qdisc", "del", "dev", dev, "root"],
                    capture_output=True,
                    timeout=20,
                    check=False,
                )
        return ""

    def close(self) -> None:
        if self.net is not None:
            self.net.close()  # the namespaces, with their rules and qdiscs

    def _set(self, name: str, which: str, addrs: Sequence[str]) -> None:
        self._nft(name, "flush", "set", "inet", TABLE, which)
        if addrs:
            self._nft(name, "add", "element", "inet", TABLE, which, "{ " + ", ".join(addrs) + " }")

    def _nft(self, name: str, *args: str, stdin: str | None = None) -> None:
        assert self.net is not None
        command = ["ip", "netns", "exec", self.net.namespace(name), "nft", *args]
        done = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=20)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)}: {done.stderr.strip()}")
