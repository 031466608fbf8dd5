"""A node's home directory: its key, its configuration, its state database, and what the
running daemon publishes for the CLI (its pid and API port).

    <home>/identity.key   Ed25519 seed, 0600
    <home>/config.json    colony, listen addresses, bootstrap peers, executor settings
    <home>/state.db       the core's durable state (colonyp2p.node.store), and the members'
                          addresses last heard of (colonyp2p.node.peers), so that a
                          restarted node can dial its colony again
    <home>/listen.json    the ports the daemon bound where config.json says port 0, 0600:
                          a restarted node listens where its members last saw it
                          (colonyp2p.node.ports)
    <home>/daemon.json    written by a running daemon: pid, API port, addresses
    <home>/daemon.log     the daemon's structured log when started in the background
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from colonyp2p.errors import ColonyError

if TYPE_CHECKING:  # imported where used: PyNaCl is a fifth of `colonynode --help`'s imports
    from colonyp2p.identity import Identity

DEFAULT_HOME = Path(os.environ.get("COLONYP2P_HOME", Path.home() / ".colonyp2p"))


class HomeError(ColonyError):
    code = "home"


@dataclass
class ExecutorConfig:
    type: str = "local"  # what specs ask for in conditions.executortype
    kind: str = "python"  # how it runs them: python, shell, slurm (executors/factory.py)
    name: str = ""
    # python: name=module:function entry points; shell: the commands allowed (empty: any)
    functions: list[str] = field(default_factory=list)
    partition: str = ""  # slurm
    namespace: str = "default"  # kubernetes
    builtin: bool = True  # also serve colonyp2p.executors.builtin
    capacity: int = 2
    location: str = ""
    # python: where the `functions` entry points are called: "process" (worker
    # processes: a core each, really stopped when cancelled or past maxexectime, a crash
    # re-run on another worker) or "thread" (in the node's process: never stopped);
    # the built-ins and functions registered in code always run in threads
    isolation: str = "process"
    workers: int = 0  # isolation "process": calls at once, each in a worker (0: one per core)
    # names of environment variables a spec's `env` may set (shell, Slurm, Kubernetes);
    # others are dropped. A "PREFIX*" entry never admits loader or interpreter
    # variables (LD_*, PATH, PYTHON*, ...): those must be listed by their full name
    env: list[str] = field(default_factory=list)


@dataclass
class Config:
    colony_id: str = ""
    listen: list[str] = field(default_factory=lambda: ["/ip4/127.0.0.1/tcp/0"])
    bootstrap: list[str] = field(default_factory=list)
    api_port: int = 0
    executor: ExecutorConfig | None = field(default_factory=ExecutorConfig)
    params: dict[str, float] = field(default_factory=dict)  # protocol timing overrides
    psk: str = ""  # 64 hex digits: a private network (every member needs the same key)
    dht: str = "server"  # server (reachable nodes), client (behind NAT), off
    mdns: bool = False  # find members on the LAN (noisy on shared networks)
    # the meta-filesystem: quota (bytes of blocks kept, 0: none), serve_rate (bytes/s
    # sent to peers at most, 0: no cap), chunker ("cdc-..." or "fixed-<bytes>"), paths
    # (the directories the local API's fs operations may read and write; default: the
    # home directory of the daemon's user, never the node's home)
    mfs: dict[str, Any] = field(default_factory=dict)
    # the local API: allow (member ids, or "admins", that may act through it besides
    # the node's own key; see node/api.py)
    api: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: object, source: str = "config.json") -> Config:
        """The config in ``data`` (config.json's content), every key and value checked.

        A misspelled key or a wrong value is refused with one line naming ``source``,
        the key and, for a key, the known one closest to it: a node that silently ran
        without the setting its owner meant to make is worse than one that says why it
        will not start."""
        return _Checker(source).config(data)


class Home:
    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root) if root is not None else DEFAULT_HOME

    @property
    def identity_path(self) -> Path:
        return self.root / "identity.key"

    @property
    def config_path(self) -> Path:
        return self.root / "config.json"

    @property
    def state_path(self) -> Path:
        return self.root / "state.db"

    @property
    def runtime_path(self) -> Path:
        return self.root / "daemon.json"

    @property
    def log_path(self) -> Path:
        return self.root / "daemon.log"

    @property
    def listen_path(self) -> Path:
        return self.root / "listen.json"

    def exists(self) -> bool:
        return self.identity_path.exists()

    def init(self) -> Identity:
        """Create the home with a new key; refuses to replace an existing key."""
        from colonyp2p.identity import Identity, load_identity, save_identity

        if self.identity_path.exists():
            raise HomeError(f"{self.root} already has a key ({load_identity(self.identity_path)})")
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        identity = Identity.generate()
        save_identity(identity, self.identity_path)
        self.save_config(Config())
        return identity

    def identity(self) -> Identity:
        from colonyp2p.identity import load_identity

        return load_identity(self.identity_path)

    def config(self) -> Config:
        try:
            data = json.loads(self.config_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise HomeError(f"no {self.config_path}; run `colonynode init` first") from None
        except json.JSONDecodeError as exc:
            raise HomeError(f"{self.config_path} is not valid JSON: {exc}") from None
        return Config.from_json(data, str(self.config_path))

    def save_config(self, config: Config) -> None:
        _write_private(self.config_path, json.dumps(config.to_json(), indent=2) + "\n")

    def runtime(self) -> dict[str, Any] | None:
        """What the running daemon published, or None when none runs."""
        try:
            data: dict[str, Any] = json.loads(self.runtime_path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        pid = data.get("pid")
        if not isinstance(pid, int) or not alive(pid):
            return None
        return data

    def publish_runtime(self, data: dict[str, Any]) -> None:
        _write_private(self.runtime_path, json.dumps(data, indent=2) + "\n")

    def clear_runtime(self) -> None:
        self.runtime_path.unlink(missing_ok=True)

    def listen_ports(self) -> dict[str, int]:
        """The ports bound before, by configured listen address (one with port 0); empty
        when none was kept or the file is damaged (the node then picks new ports)."""
        try:
            data = json.loads(self.listen_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        ports = data.get("ports") if isinstance(data, dict) else None
        if not isinstance(ports, dict):
            return {}
        return {
            str(addr): port
            for addr, port in ports.items()
            if type(port) is int and 0 < port < 65536
        }

    def save_listen_ports(self, ports: dict[str, int]) -> None:
        _write_private(self.listen_path, json.dumps({"ports": ports}, indent=2) + "\n")


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs. A killed daemon whose parent is gone can stay a zombie
    where nothing reaps orphans (containers): that counts as dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


# --- config.json, checked ---------------------------------------------------------------

# The keys of config.json's free-form sections. The daemon's parts check them again when
# they start (node/fs.py for mfs, node/backend.py for api): a key added there must be
# added here too, or every config that uses it is refused at load.
SECTION_KEYS: dict[str, frozenset[str]] = {
    "mfs": frozenset({"quota", "serve_rate", "chunker", "paths"}),
    "api": frozenset({"allow"}),
}
DHT_MODES = ("server", "client", "off")
_HEX = frozenset("0123456789abcdef")
_TYPES: dict[str, tuple[type, str]] = {
    "str": (str, "a string"),
    "int": (int, "an integer"),
    "float": (float, "a number"),
    "bool": (bool, "true or false"),
    "list[str]": (list, "a list of strings"),
    "dict[str, Any]": (dict, "an object"),
    "dict[str, float]": (dict, "an object"),
}


def check_multiaddrs(values: object, where: str) -> list[str]:
    """``values`` as a list of multiaddrs, or HomeError naming ``where`` (a file and key,
    or a command-line option) and the address that does not parse."""
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise HomeError(f"{where}: must be a list of multiaddrs (strings), got {values!r}")
    import multiaddr  # what libp2p parses them with; here, not for every command

    for value in values:
        if not value:
            raise HomeError(f"{where}: an empty multiaddr (write e.g. /ip4/127.0.0.1/tcp/0)")
        try:
            multiaddr.Multiaddr(value)
        except ValueError as exc:  # multiaddr's ParseError: "Invalid MultiAddr 'x': why (...)"
            why = str(exc).partition(": ")[2].split(" (string:")[0] or str(exc)
            raise HomeError(f"{where}: {value!r} is not a multiaddr ({why})") from None
    return list(values)


def check_psk(value: object, where: str) -> str:
    """A private network's key: empty (none) or 64 lowercase hex digits."""
    if not isinstance(value, str) or (value and (len(value) != 64 or not set(value) <= _HEX)):
        raise HomeError(f"{where}: must be 64 lowercase hex digits (32 bytes) or empty")
    return value


class _Checker:
    """Reads config.json's content into a Config, refusing what it would misread."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, message: str) -> HomeError:
        return HomeError(f"{self.source}: {message}")

    def keys(self, section: object, known: Iterable[str], prefix: str = "") -> dict[str, Any]:
        """``section`` as an object whose every key is in ``known``."""
        if not isinstance(section, dict):
            where = f"{prefix.rstrip('.')}: " if prefix else ""
            raise self.fail(f"{where}must be a JSON object")
        names = sorted(known)
        for key in section:
            if key not in known:
                close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.6)
                hint = (
                    f"did you mean {prefix + close[0]!r}?"
                    if close
                    else f"known: {', '.join(names) or 'none'}"
                )
                raise self.fail(f"unknown key {prefix + str(key)!r} ({hint})")
        return section

    def typed(self, value: Any, annotation: str, key: str) -> Any:
        """``value`` checked against a dataclass field's annotation (those of _TYPES; any
        other annotation is taken as it is)."""
        expected = _TYPES.get(annotation)
        if expected is None:
            return value
        kind, what = expected
        ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
        if kind is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        if kind is list:
            ok = ok and all(isinstance(v, str) for v in value)
        if not ok:
            raise self.fail(f"{key}: must be {what}, got {json.dumps(value)}")
        return float(value) if kind is float else value

    def dataclass(self, cls: Any, section: object, prefix: str) -> Any:
        """An instance of dataclass ``cls`` from ``section``, its keys and types checked."""
        known = {f.name: f for f in fields(cls)}
        data = self.keys(section, known, prefix)
        values = {
            name: self.typed(value, str(known[name].type), prefix + name)
            for name, value in data.items()
        }
        return cls(**values)

    def config(self, data: object) -> Config:
        config: Config = self.dataclass(Config, _without(data, "executor"), "")
        assert isinstance(data, dict)  # dataclass() checked it
        if "executor" in data:
            ex = data["executor"]  # null: a member that runs nothing
            if ex is None:
                config.executor = None
            else:
                config.executor = self.dataclass(ExecutorConfig, ex, "executor.")
        config.listen = check_multiaddrs(config.listen, f"{self.source}: listen")
        config.bootstrap = check_multiaddrs(config.bootstrap, f"{self.source}: bootstrap")
        config.psk = check_psk(config.psk, f"{self.source}: psk")
        if not 0 <= config.api_port < 65536:
            raise self.fail(f"api_port: must be a port (0: any free one), got {config.api_port}")
        if config.dht not in DHT_MODES:
            raise self.fail(f"dht: must be one of {', '.join(DHT_MODES)}, got {config.dht!r}")
        from colonyp2p.core.params import Params  # the protocol's timing knobs

        params = self.keys(config.params, {f.name for f in fields(Params)}, "params.")
        config.params = {k: self.typed(v, "float", f"params.{k}") for k, v in params.items()}
        for name, known in SECTION_KEYS.items():
            self.keys(getattr(config, name), known, f"{name}.")
        return config


def _without(data: object, key: str) -> object:
    return {k: v for k, v in data.items() if k != key} if isinstance(data, dict) else data
