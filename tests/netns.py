"""Linux network namespaces cabled to one bridge, for daemons on a real (if virtual)
network: used by tests/test_partition.py and bench/bench_mfs.py (--part netns).

A "switch" namespace holds a bridge; each node gets its own namespace with one veth pair
to the bridge (``eth0`` on the node's side, ``p<index>`` on the switch's), an address in
192.0.2.0/24 (TEST-NET-1, a documentation range: nothing outside the namespaces made here
is ever addressed) and its own loopback. A node's daemon is started inside its namespace
through a command prefix (``ip netns exec NS``, see tests/cluster.py's ``Node.prefix``).
Ports can be taken down (a partition) and links shaped with ``tc`` (a device's line
rate). Needs ``ip`` (and
``tc`` for shaping) and the right to make namespaces (root, or CAP_SYS_ADMIN and
CAP_NET_ADMIN); ``NotPermitted`` says when that right is missing.
"""

from __future__ import annotations

import re
import shutil
import subprocess

SUBNET = "192.0.2"  # TEST-NET-1 (RFC 5737), only inside the namespaces made here


class NotPermitted(Exception):
    pass


def missing_tools(*tools: str) -> str | None:
    """Why namespaces cannot be used here for want of a tool (``ip``, ``tc``), or None."""
    absent = [t for t in tools if shutil.which(t) is None]
    if absent:
        return f"{', '.join(absent)} (iproute2) not installed: no network namespaces here"
    return None


def _run(tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [tool, *args],
        capture_output=True,
        text=True,
        timeout=20,
        stdin=subprocess.DEVNULL,
    )
    if check and done.returncode != 0:
        raise RuntimeError(
            f"{tool} {' '.join(args)} exited {done.returncode}: {done.stderr.strip()}"
        )
    return done


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return _run("ip", *args, check=check)


def tc(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return _run("tc", *args, check=check)


class Network:
    """A bridge in a switch namespace, and one namespace per node cabled to it."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.switch = f"{tag}-sw"
        self.namespaces: list[str] = []
        self.ports: dict[str, str] = {}  # node name -> its port on the bridge

    def _namespace(self, name: str) -> str:
        ns = f"{self.tag}-{name}"
        ip("netns", "del", ns, check=False)  # left over by an earlier run with our pid
        done = ip("netns", "add", ns, check=False)
        if done.returncode != 0:
            if any(s in done.stderr for s in ("not permitted", "Permission denied")):
                raise NotPermitted(done.stderr.strip())
            raise RuntimeError(f"ip netns add {ns}: {done.stderr.strip()}")
        self.namespaces.append(ns)
        ip("-n", ns, "link", "set", "lo", "up")
        return ns

    def start(self) -> None:
        self._namespace("sw")
        ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        ip("-n", self.switch, "link", "set", "br0", "up")

    def namespace(self, name: str) -> str:
        return f"{self.tag}-{name}"

    def attach(self, name: str, index: int) -> tuple[list[str], str]:
        """A namespace for node ``name``: the command prefix to run in it, its address."""
        ns = self._namespace(name)
        port = self.ports[name] = f"p{index}"
        ip(
            "-n",
            self.switch,
            "link",
            "add",
            port,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            ns,
        )
        ip("-n", self.switch, "link", "set", port, "master", "br0", "up")
        addr = f"{SUBNET}.{10 + index}"
        ip("-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
        ip("-n", ns, "link", "set", "eth0", "up")
        return ["ip", "netns", "exec", ns], addr

    def cut(self, name: str) -> None:
        ip("-n", self.switch, "link", "set", self.ports[name], "down")

    def heal(self, name: str) -> None:
        ip("-n", self.switch, "link", "set", self.ports[name], "up")

    def shape(self, name: str, up_mbit: float, down_mbit: float | None = None) -> dict[str, str]:
        """Node ``name``'s link at a line rate, with a token bucket (``tc`` tbf): what it
        sends (``up_mbit``, on its own side of the veth) and what it receives
        (``down_mbit``, on the switch's side; default the same). 0 leaves a direction
        unshaped. Rates count whole Ethernet frames, as a real link does. Returns the
        qdisc of each direction as ``tc`` shows it, for the record."""
        down = up_mbit if down_mbit is None else down_mbit
        shown = {}
        for direction, mbit in (("up", up_mbit), ("down", down)):
            if mbit <= 0:
                continue
            # a bucket of 4 ms at the rate (at least 128 KiB, above a 64 KiB GSO packet)
            # and a queue of 25 ms: about what a switch port buffers
            burst = max(128 * 1024, int(mbit * 1e6 / 8 * 0.004))
            tbf = ("root", "tbf", "rate", f"{mbit:g}mbit", "burst", str(burst))
            self._qdisc(name, direction, "replace", *tbf, "latency", "25ms")
            shown[direction] = self._qdisc(name, direction, "show").stdout.strip()
        return shown

    def link_stats(self, name: str) -> dict[str, dict[str, int]]:
        """Bytes, packets, drops and overlimits so far on node ``name``'s shaped link,
        each way (``tc -s qdisc show``)."""
        out = {}
        for direction in ("up", "down"):
            text = self._qdisc(name, direction, "show", stats=True).stdout
            found = re.search(r"Sent (\d+) bytes (\d+) pkt \(dropped (\d+), overlimits (\d+)", text)
            if found:
                keys = ("bytes", "packets", "dropped", "overlimits")
                out[direction] = dict(zip(keys, map(int, found.groups()), strict=True))
        return out

    def _qdisc(
        self, name: str, direction: str, verb: str, *args: str, stats: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """``tc qdisc VERB`` where node ``name``'s traffic in ``direction`` leaves a veth:
        its own end for what it sends (up), the switch's end for what it receives (down)."""
        ns, dev = (
            (self.namespace(name), "eth0") if direction == "up" else (self.switch, self.ports[name])
        )
        return tc(*(["-s"] if stats else []), "-n", ns, "qdisc", verb, "dev", dev, *args)

    def close(self) -> None:
        for ns in reversed(self.namespaces):
            ip("netns", "del", ns, check=False)
        self.namespaces.clear()
