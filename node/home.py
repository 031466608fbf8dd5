"""A node's home directory: its key, its configuration, its state database, and what the
running daemon publishes for the CLI (its pid and API port).

    <home>/identity.key   Ed25519 seed, 0600
    <home>/config.json    colony, listen addresses, bootstrap peers, executor settings
    <home>/state.db       the core's durable state (colonyp2p.node.store)
    <home>/daemon.json    written by a running daemon: pid, API port, addresses
    <home>/daemon.log     the daemon's structured log when started in the background
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from colonyp2p.errors import ColonyError
from colonyp2p.identity import Identity, load_identity, save_identity

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
    # python: "thread" (calls in the node's process) or "process" (worker processes:
    # a core each, really stopped when cancelled, a crash re-run on another worker)
    isolation: str = "thread"
    workers: int = 0  # isolation "process": calls at once, each in a worker (0: one per core)


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
    # sent to peers at most, 0: no cap), chunker ("cdc-..." or "fixed-<bytes>")
    mfs: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Config:
        try:
            ex = data.get("executor")
            return cls(
                colony_id=str(data.get("colony_id", "")),
                listen=[str(a) for a in data.get("listen", ["/ip4/127.0.0.1/tcp/0"])],
                bootstrap=[str(a) for a in data.get("bootstrap", [])],
                api_port=int(data.get("api_port", 0)),
                executor=None if ex is None else ExecutorConfig(**ex),
                params={str(k): float(v) for k, v in data.get("params", {}).items()},
                psk=str(data.get("psk", "")),
                dht=str(data.get("dht", "server")),
                mdns=bool(data.get("mdns", False)),
                mfs=dict(data.get("mfs", {})),
            )
        except (TypeError, ValueError) as exc:
            raise HomeError(f"config.json is not valid: {exc}") from None


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

    def exists(self) -> bool:
        return self.identity_path.exists()

    def init(self) -> Identity:
        """Create the home with a new key; refuses to replace an existing key."""
        if self.identity_path.exists():
            raise HomeError(f"{self.root} already has a key ({load_identity(self.identity_path)})")
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        identity = Identity.generate()
        save_identity(identity, self.identity_path)
        self.save_config(Config())
        return identity

    def identity(self) -> Identity:
        return load_identity(self.identity_path)

    def config(self) -> Config:
        try:
            data = json.loads(self.config_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise HomeError(f"no {self.config_path}; run `colonynode init` first") from None
        except json.JSONDecodeError as exc:
            raise HomeError(f"{self.config_path} is not valid JSON: {exc}") from None
        return Config.from_json(data)

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
