"""The listen port a daemon keeps across restarts.

Members reach each other at the addresses they announced, and remember them (see
:mod:`colonyp2p.node.peers`). A node configured to listen on port 0 would come back from
a restart on a new random port, where nobody looks for it: so the port it first bound is
kept in its home (``listen.json``) and asked for again on later starts. Only port-0
addresses are remembered; an explicitly configured port is used as given, and one that is
taken is an error (``check_ports``, the same test bind).

A remembered port that another program took meanwhile is given up for a fresh one, with
one warning: the node then dials its members itself (:mod:`colonyp2p.node.redial`) and
announces its new addresses, so the colony finds it all the same.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from colonyp2p.errors import ColonyError
from colonyp2p.node.home import Home

log = logging.getLogger("colonyp2p.daemon")

_FAMILIES = {"ip4": socket.AF_INET, "ip6": socket.AF_INET6}
_KINDS = {"tcp": socket.SOCK_STREAM, "udp": socket.SOCK_DGRAM}


class _Parsed(NamedTuple):
    ip_proto: str  # ip4, ip6
    ip: str
    transport: str  # tcp, udp
    port: int
    rest: tuple[str, ...]  # e.g. ("quic-v1",)


def _parse(addr: str) -> _Parsed | None:
    """``/ip4|ip6/IP/tcp|udp/PORT[/...]``, or None for anything else (DNS names, ...),
    whose port is then left alone."""
    parts = addr.split("/")
    if len(parts) < 5 or parts[0] or parts[1] not in _FAMILIES or parts[3] not in _KINDS:
        return None
    try:
        port = int(parts[4])
    except ValueError:
        return None
    return _Parsed(parts[1], parts[2], parts[3], port, tuple(parts[5:]))


def _with_port(p: _Parsed, port: int) -> str:
    return "/".join(("", p.ip_proto, p.ip, p.transport, str(port), *p.rest))


class PortTaken(ColonyError):
    code = "listen_failed"


def check_ports(listen: Sequence[str]) -> None:
    """Refuse an explicitly configured port that is taken. py-libp2p's TCP listener sets
    SO_REUSEPORT, so a second daemon given the port of a running one would listen on it
    too, and the kernel would split incoming connections between two peers."""
    for addr in listen:
        p = _parse(addr)
        if p is not None and p.port != 0 and not _free(p, p.port):
            raise PortTaken(
                f"cannot listen on {addr}: the port is in use (by another program, or "
                "another colonynode daemon)"
            )


def sticky_ports(home: Home, listen: Sequence[str]) -> list[str]:
    """``listen`` with each port-0 address on the port it had before, where that port is
    still free; PortTaken when an explicitly configured port is not."""
    check_ports(listen)
    remembered = home.listen_ports()
    out = []
    for configured in listen:
        p = _parse(configured)
        port = remembered.get(configured)
        if p is None or p.port != 0 or port is None:
            out.append(configured)
        elif _free(p, port):
            out.append(_with_port(p, port))
        else:
            log.warning(
                "port %d, where this node listened before, is taken by another program: "
                "listening on a new port for %s (the node redials its members)",
                port,
                configured,
            )
            out.append(configured)
    return out


def remember_ports(home: Home, listen: Sequence[str], bound: Iterable[object]) -> None:
    """Keep the ports bound for ``listen``'s port-0 addresses (``bound``: the listeners'
    multiaddrs); writes the file only when they changed."""
    before = home.listen_ports()
    ports = {a: port for a, port in before.items() if a in listen}  # forget old configs
    parsed = (_parse(str(a)) for a in bound)
    unused = [p for p in parsed if p is not None and p.port != 0]
    for configured in listen:
        want = _parse(configured)
        if want is None or want.port != 0:
            continue
        for p in unused:
            if _same_listener(want, p):
                ports[configured] = p.port
                unused.remove(p)
                break
    if ports != before:
        try:
            home.save_listen_ports(ports)
        except OSError as exc:  # a read-only home: the node runs, on new ports next time
            log.warning("cannot keep the listen ports in %s: %s", home.listen_path, exc)


def _same_listener(want: _Parsed, got: _Parsed) -> bool:
    unspecified = want.ip in ("0.0.0.0", "::")
    return (want.ip_proto, want.transport, want.rest) == (
        got.ip_proto,
        got.transport,
        got.rest,
    ) and (unspecified or want.ip == got.ip)


def _free(p: _Parsed, port: int) -> bool:
    """Whether ``port`` can be bound for ``p`` now. TCP with SO_REUSEADDR, as libp2p's
    listener does, so that connections of our own previous run lingering in TIME_WAIT do
    not count; without SO_REUSEPORT, so that a port another daemon listens on (libp2p
    sets SO_REUSEPORT) does count as taken rather than being shared with it."""
    kind = _KINDS[p.transport]
    try:
        with socket.socket(_FAMILIES[p.ip_proto], kind) as s:
            if kind == socket.SOCK_STREAM:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((p.ip, port))
    except OSError:
        return False
    return True
