"""ColonyOS JSON, read as users write it and written as ColonyOS reads it.

Users bring their ColonyOS function-spec and workflow files unchanged, so the
reader is forgiving where ColonyOS is: absent fields, nulls and empty strings
mean "not set", -1 means "not set" for counts (ColonyOS's NOTSET), "locationname"
and "location" are one field, "keepsnapshot" may be spelled "keepsnaphot" (the Go
field's spelling), fs dirs may be written absolute ("/data" is the working
directory's "data") and fs labels without their leading "/". Keys it does not
know are ignored, not refused (ColonyOS keeps adding fields): their JSON paths
are appended to ``ignored`` when a list is given, and logged otherwise.
ColonyOS's "unlimited" maxretries (-1) is read as ``spec.MAX_RETRIES``. This is
the JSON of the local API too, so -1 means the same there. Other negative
numbers mean nothing in ColonyOS and are refused, as are values outside the
ranges ``spec`` states (maxexectime -5 or 1e308, walltime beyond a year, ...).

Anything else that is wrong raises ValidationError whose field is the JSON path
of the bad value, such as ``functionspecs[2].conditions.mem``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from colonyp2p.errors import ValidationError
from colonyp2p.model.checks import check_int
from colonyp2p.model.spec import (
    MAX_RETRIES,
    Conditions,
    ConflictRule,
    FsSpec,
    FunctionSpec,
    Gpu,
    OnConflicts,
    SnapshotMount,
    SyncDirMount,
)
from colonyp2p.model.units import format_bytes, format_cpu, parse_bytes, parse_cpu, parse_seconds
from colonyp2p.model.workflow import WorkflowSpec

logger = logging.getLogger(__name__)

T = TypeVar("T")

_SPEC_KEYS = frozenset(
    {
        "nodename",
        "funcname",
        "args",
        "kwargs",
        "priority",
        "maxwaittime",
        "maxexectime",
        "maxretries",
        "conditions",
        "label",
        "fs",
        "env",
    }
)
_CONDITION_KEYS = frozenset(
    {
        "colonyname",  # the colony is the one the spec is submitted to
        "executornames",
        "executortype",
        "locationname",
        "location",
        "dependencies",
        "nodes",
        "cpu",
        "processes",
        "processespernode",
        "mem",
        "storage",
        "gpu",
        "walltime",
    }
)
_GPU_KEYS = frozenset({"name", "mem", "count", "nodecount"})
_FS_KEYS = frozenset({"mount", "snapshots", "dirs"})
_SNAPSHOT_KEYS = frozenset(
    {"snapshotid", "label", "dir", "keepfiles", "keepsnapshot", "keepsnaphot"}
)
_SYNCDIR_KEYS = frozenset({"label", "dir", "keepfiles", "onconflicts"})
_ONCONFLICTS_KEYS = frozenset({"onstart", "onclose"})
_RULE_KEYS = frozenset({"keeplocal"})
_WORKFLOW_KEYS = frozenset({"colonyname", "functionspecs"})
_NOTSET = -1


# --- reading -------------------------------------------------------------------


def function_spec_from_colonyos(
    data: Mapping[str, Any], ignored: list[str] | None = None
) -> FunctionSpec:
    """A FunctionSpec from ColonyOS function-spec JSON data (as ``json.load`` returns it)."""
    reader = _Reader(ignored)
    spec = reader.function_spec(data, "")
    reader.report()
    return spec


def workflow_from_colonyos(data: Any, ignored: list[str] | None = None) -> WorkflowSpec:
    """A WorkflowSpec from ColonyOS workflow JSON data: ``{"colonyname": ..., "functionspecs":
    [...]}``, or a bare list of function specs."""
    reader = _Reader(ignored)
    workflow = reader.workflow(data)
    reader.report()
    return workflow


def load_spec_file(path: str | Path, ignored: list[str] | None = None) -> FunctionSpec:
    """Read a ColonyOS function-spec JSON file."""
    data = _load_json(Path(path))
    if isinstance(data, list) or (isinstance(data, dict) and "functionspecs" in data):
        raise ValidationError(f"{path} holds a workflow, not one function spec")
    return _with_file_note(path, function_spec_from_colonyos, data, ignored)


def load_workflow_file(path: str | Path, ignored: list[str] | None = None) -> WorkflowSpec:
    """Read a ColonyOS workflow JSON file (an object with functionspecs, or a list of specs)."""
    return _with_file_note(path, workflow_from_colonyos, _load_json(Path(path)), ignored)


def _load_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValidationError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ValidationError(f"{path} is not UTF-8 text: {exc}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError(
            f"{path} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc


def _with_file_note(
    path: str | Path,
    load: Callable[[Any, list[str] | None], T],
    data: Any,
    ignored: list[str] | None,
) -> T:
    try:
        return load(data, ignored)
    except ValidationError as exc:
        exc.add_note(f"in {path}")
        raise


class _Reader:
    """One conversion: knows where it is (for error paths) and what it ignored."""

    def __init__(self, ignored: list[str] | None) -> None:
        self.ignored: list[str] = [] if ignored is None else ignored
        self.log = ignored is None
        self.notes: list[str] = []

    def report(self) -> None:
        if self.log and self.ignored:
            logger.warning(
                "ignored ColonyOS fields colonyp2p does not use: %s", ", ".join(self.ignored)
            )
        for note in self.notes:
            logger.info("%s", note)

    # --- structure

    def workflow(self, data: Any) -> WorkflowSpec:
        specs_data: list[Any]
        if isinstance(data, list):
            colonyname, specs_data, prefix = "", data, ""
        else:
            obj = self.obj(data, "")
            self.unknown(obj, _WORKFLOW_KEYS, "")
            colonyname = self.text(obj, "colonyname", "")
            listed = obj.get("functionspecs")
            if not isinstance(listed, list):
                raise ValidationError(
                    "missing" if listed is None else "must be a list of function specs",
                    "functionspecs",
                )
            specs_data, prefix = listed, "functionspecs"
        specs = tuple(self.function_spec(s, f"{prefix}[{i}]") for i, s in enumerate(specs_data))
        if not colonyname:
            colonyname = self.colony_of_specs(specs_data)
        try:
            return WorkflowSpec(colonyname=colonyname, functionspecs=specs)
        except ValidationError as exc:
            # WorkflowSpec names its fields "functionspecs[i]...": right for the object
            # form; a bare list has no "functionspecs" key.
            if prefix or not exc.field or not exc.field.startswith("functionspecs"):
                raise
            message = _message(exc)
            field = exc.field.removeprefix("functionspecs") or None
            raise type(exc)(message, field) from None

    def colony_of_specs(self, specs_data: list[Any]) -> str:
        # A bare list of specs names its colony in each spec's conditions only.
        for spec in specs_data:
            conditions = spec.get("conditions") if isinstance(spec, dict) else None
            if isinstance(conditions, dict) and isinstance(conditions.get("colonyname"), str):
                return str(conditions["colonyname"])
        return ""

    def function_spec(self, data: Any, at: str) -> FunctionSpec:
        obj = self.obj(data, at)
        self.unknown(obj, _SPEC_KEYS, at)
        maxretries = self.integer(obj, "maxretries", at, 0)
        # ColonyOS retries for ever at -1 only: any other negative number is a mistake.
        check_int(maxretries, _join(at, "maxretries"), 0, MAX_RETRIES, no_limit=_NOTSET)
        if maxretries == _NOTSET:
            self.notes.append(
                f"{_join(at, 'maxretries')}: ColonyOS's unlimited retries ({maxretries}) "
                f"read as {MAX_RETRIES}"
            )
            maxretries = MAX_RETRIES
        kwargs = obj.get("kwargs")
        if kwargs is not None and not isinstance(kwargs, dict):
            raise ValidationError("must be an object", _join(at, "kwargs"))
        return _build(
            at,
            FunctionSpec,
            funcname=self.text(obj, "funcname", at),
            nodename=self.text(obj, "nodename", at),
            args=tuple(self.items(obj, "args", at)),
            kwargs=dict(kwargs or {}),
            priority=self.integer(obj, "priority", at, 0),
            maxwaittime=self.number(obj, "maxwaittime", at, -1),
            maxexectime=self.number(obj, "maxexectime", at, -1),
            maxretries=maxretries,
            conditions=self.conditions(obj.get("conditions"), _join(at, "conditions")),
            label=self.text(obj, "label", at),
            env=self.env(obj.get("env"), _join(at, "env")),
            fs=self.fs(obj.get("fs"), _join(at, "fs")),
        )

    def conditions(self, data: Any, at: str) -> Conditions:
        obj = self.obj(data, at)
        self.unknown(obj, _CONDITION_KEYS, at)
        location = self.text(obj, "locationname", at) or self.text(obj, "location", at)
        return _build(
            at,
            Conditions,
            executortype=self.text(obj, "executortype", at),
            executornames=tuple(self.str_list(obj, "executornames", at)),
            location=location,
            nodes=self.count(obj, "nodes", at),
            processes=self.count(obj, "processes", at),
            processespernode=self.count(obj, "processespernode", at),
            cpu=self.unit(parse_cpu, obj, "cpu", at),
            mem=self.unit(parse_bytes, obj, "mem", at),
            storage=self.unit(parse_bytes, obj, "storage", at),
            gpu=self.gpu(obj.get("gpu"), _join(at, "gpu")),
            walltime=self.seconds(obj, "walltime", at),
            dependencies=tuple(self.str_list(obj, "dependencies", at)),
        )

    def gpu(self, data: Any, at: str) -> Gpu:
        obj = self.obj(data, at)
        self.unknown(obj, _GPU_KEYS, at)
        return _build(
            at,
            Gpu,
            name=self.text(obj, "name", at),
            count=self.count(obj, "count", at),
            mem=self.unit(parse_bytes, obj, "mem", at),
            nodecount=self.count(obj, "nodecount", at),
        )

    def fs(self, data: Any, at: str) -> FsSpec:
        obj = self.obj(data, at)
        self.unknown(obj, _FS_KEYS, at)
        snapshots = tuple(
            self.snapshot(s, f"{_join(at, 'snapshots')}[{i}]")
            for i, s in enumerate(self.items(obj, "snapshots", at))
        )
        dirs = tuple(
            self.syncdir(d, f"{_join(at, 'dirs')}[{i}]")
            for i, d in enumerate(self.items(obj, "dirs", at))
        )
        return _build(at, FsSpec, mount=self.text(obj, "mount", at), snapshots=snapshots, dirs=dirs)

    def snapshot(self, data: Any, at: str) -> SnapshotMount:
        obj = self.obj(data, at)
        self.unknown(obj, _SNAPSHOT_KEYS, at)
        keep = self.flag(obj, "keepsnapshot", at) or self.flag(obj, "keepsnaphot", at)
        return _build(
            at,
            SnapshotMount,
            label=_label(self.text(obj, "label", at)),
            dir=self.relative_dir(obj, at),
            snapshotid=self.text(obj, "snapshotid", at),
            keepfiles=self.flag(obj, "keepfiles", at),
            keepsnapshot=keep,
        )

    def syncdir(self, data: Any, at: str) -> SyncDirMount:
        obj = self.obj(data, at)
        self.unknown(obj, _SYNCDIR_KEYS, at)
        conflicts_at = _join(at, "onconflicts")
        conflicts = self.obj(obj.get("onconflicts"), conflicts_at)
        self.unknown(conflicts, _ONCONFLICTS_KEYS, conflicts_at)
        return _build(
            at,
            SyncDirMount,
            label=_label(self.text(obj, "label", at)),
            dir=self.relative_dir(obj, at),
            keepfiles=self.flag(obj, "keepfiles", at),
            onconflicts=OnConflicts(
                onstart=self.rule(conflicts.get("onstart"), _join(conflicts_at, "onstart")),
                onclose=self.rule(conflicts.get("onclose"), _join(conflicts_at, "onclose")),
            ),
        )

    def rule(self, data: Any, at: str) -> ConflictRule:
        obj = self.obj(data, at)
        self.unknown(obj, _RULE_KEYS, at)
        return ConflictRule(keeplocal=self.flag(obj, "keeplocal", at))

    def relative_dir(self, obj: Mapping[str, Any], at: str) -> str:
        # ColonyOS executors append dir to their fs root, so real files write "/data".
        path = self.text(obj, "dir", at)
        stripped = path.lstrip("/")
        if path and not stripped:
            raise ValidationError(
                "must name a directory inside the working directory, not '/'", _join(at, "dir")
            )
        return stripped

    def env(self, data: Any, at: str) -> dict[str, str]:
        obj = self.obj(data, at)
        for key, value in obj.items():
            if not isinstance(value, str):
                raise ValidationError(
                    f"environment values are strings, got {type(value).__name__}", _join(at, key)
                )
        return dict(obj)

    # --- leaves

    def obj(self, data: Any, at: str) -> Mapping[str, Any]:
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise ValidationError(f"must be an object, got {_json_type(data)}", at or None)
        return data

    def unknown(self, obj: Mapping[str, Any], known: frozenset[str], at: str) -> None:
        for key in obj:
            if key not in known:
                self.ignored.append(_join(at, key))

    def text(self, obj: Mapping[str, Any], key: str, at: str) -> str:
        value = obj.get(key)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise ValidationError(f"must be a string, got {_json_type(value)}", _join(at, key))
        return value

    def flag(self, obj: Mapping[str, Any], key: str, at: str) -> bool:
        value = obj.get(key)
        if value is None:
            return False
        if not isinstance(value, bool):
            raise ValidationError(f"must be true or false, got {_json_type(value)}", _join(at, key))
        return value

    def integer(self, obj: Mapping[str, Any], key: str, at: str, default: int) -> int:
        value = obj.get(key)
        if value is None:
            return default
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError(f"must be an integer, got {_json_type(value)}", _join(at, key))
        return value

    def count(self, obj: Mapping[str, Any], key: str, at: str) -> int:
        value = self.integer(obj, key, at, 0)
        return 0 if value == _NOTSET else value

    def number(self, obj: Mapping[str, Any], key: str, at: str, default: float) -> float:
        value = obj.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValidationError(f"must be a number, got {_json_type(value)}", _join(at, key))
        # Not float(value): the model checks the range first, and float() of a huge JSON
        # integer would raise OverflowError instead of naming the field.
        return value

    def seconds(self, obj: Mapping[str, Any], key: str, at: str) -> int:
        value = obj.get(key)
        if value == _NOTSET:
            return 0
        return parse_seconds(value, _join(at, key))

    def unit(self, parse: Any, obj: Mapping[str, Any], key: str, at: str) -> int:
        value = obj.get(key)
        if value is None:
            return 0
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        result: int = parse(value, _join(at, key))
        return result

    def items(self, obj: Mapping[str, Any], key: str, at: str) -> list[Any]:
        value = obj.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise ValidationError(f"must be a list, got {_json_type(value)}", _join(at, key))
        return value

    def str_list(self, obj: Mapping[str, Any], key: str, at: str) -> list[str]:
        items = self.items(obj, key, at)
        for i, item in enumerate(items):
            if not isinstance(item, str):
                raise ValidationError(
                    f"must be a string, got {_json_type(item)}", f"{_join(at, key)}[{i}]"
                )
        return items


def _join(at: str, key: str) -> str:
    return f"{at}.{key}" if at else key


def _label(label: str) -> str:
    # ColonyOS does not insist on the leading "/" of a label; the colony does.
    return label if not label or label.startswith("/") else "/" + label


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _build(at: str, cls: type[T], **fields: Any) -> T:
    """Construct a model object, moving its ValidationError to the JSON path ``at``."""
    try:
        return cls(**fields)
    except ValidationError as exc:
        raise _relocated(exc, at) from None


def _relocated(exc: ValidationError, at: str) -> ValidationError:
    if not at:
        return exc
    field = f"{at}.{exc.field}" if exc.field else at
    return type(exc)(_message(exc), field)


def _message(exc: ValidationError) -> str:
    """The message of a ValidationError without the "field: " prefix its str() has."""
    text = str(exc)
    prefix = f"{exc.field}: " if exc.field else ""
    return text[len(prefix) :] if prefix and text.startswith(prefix) else text


# --- writing -------------------------------------------------------------------


def function_spec_to_colonyos(spec: FunctionSpec, colonyname: str = "") -> dict[str, Any]:
    """ColonyOS function-spec JSON data for ``spec`` (bytes in args stay bytes: not JSON)."""
    c = spec.conditions
    conditions: dict[str, Any] = {
        "colonyname": colonyname,
        "executornames": list(c.executornames),
        "executortype": c.executortype,
        "dependencies": list(c.dependencies),
        "nodes": c.nodes,
        "cpu": format_cpu(c.cpu) if c.cpu else "",
        "processes": c.processes,
        "processespernode": c.processespernode,
        "mem": format_bytes(c.mem) if c.mem else "",
        "storage": format_bytes(c.storage) if c.storage else "",
        "gpu": {
            "name": c.gpu.name,
            "mem": format_bytes(c.gpu.mem) if c.gpu.mem else "",
            "count": c.gpu.count,
            "nodecount": c.gpu.nodecount,
        },
        "walltime": c.walltime,
    }
    if c.location:
        conditions["locationname"] = c.location
    return {
        "nodename": spec.nodename,
        "funcname": spec.funcname,
        "args": _plain(spec.args),
        "kwargs": _plain(spec.kwargs),
        "priority": spec.priority,
        "maxwaittime": _number(spec.maxwaittime),
        "maxexectime": _number(spec.maxexectime),
        "maxretries": spec.maxretries,
        "conditions": conditions,
        "label": spec.label,
        "fs": {
            "mount": spec.fs.mount,
            "snapshots": [
                {
                    "snapshotid": s.snapshotid,
                    "label": s.label,
                    "dir": "/" + s.dir,
                    "keepfiles": s.keepfiles,
                    "keepsnapshot": s.keepsnapshot,
                }
                for s in spec.fs.snapshots
            ],
            "dirs": [
                {
                    "label": d.label,
                    "dir": "/" + d.dir,
                    "keepfiles": d.keepfiles,
                    "onconflicts": {
                        "onstart": {"keeplocal": d.onconflicts.onstart.keeplocal},
                        "onclose": {"keeplocal": d.onconflicts.onclose.keeplocal},
                    },
                }
                for d in spec.fs.dirs
            ],
        },
        "env": dict(spec.env),
    }


def workflow_to_colonyos(wf: WorkflowSpec) -> dict[str, Any]:
    """ColonyOS workflow JSON data for ``wf``."""
    return {
        "colonyname": wf.colonyname,
        "functionspecs": [function_spec_to_colonyos(s, wf.colonyname) for s in wf.functionspecs],
    }


def _number(value: float) -> int | float:
    # ColonyOS declares its time limits as ints.
    return int(value) if value.is_integer() else value


def _plain(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
