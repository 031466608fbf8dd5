"""typer as ``colonynode`` uses it, without what makes every command slow to start.

typer 0.29 (requirements.lock) converts every command-line value through a pydantic
``TypeAdapter``: importing pydantic and building the adapters is more than half of what
``colonynode init`` or ``colonynode submit --help`` takes (bench/results/CLI.md). Our
parameters are plain (str, int, float, bool, Path, and lists of those, without typer's path,
range or parser options): ``install`` converts those with the type itself and hands any
other to typer's own conversion, so a parameter added later with a richer annotation
still works, only at typer's speed. A typer without ``core.build_runtime_param`` (an
older one converts without pydantic) is left as it is.

typer's rich help imports a markdown parser, which costs as much again: ``typer_app``
makes apps with click's plain help and errors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args, get_origin

import typer

_installed = False


def _bool(value: object) -> bool:
    """A flag's value (click gives a bool; an environment variable gives text)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on", "y", "t"):
        return True
    if text in ("", "0", "false", "no", "off", "n", "f"):
        return False
    raise ValueError(text)


_PLAIN: dict[object, Callable[[Any], Any]] = {str: str, int: int, float: float, Path: Path}
_PLAIN[bool] = _bool


def typer_app(help: str, **options: Any) -> typer.Typer:
    """A typer app (or group) with click's plain help and errors."""
    install()
    return typer.Typer(help=help, rich_markup_mode=None, add_completion=False, **options)


def _plain(info: Any, leaf: object) -> bool:
    """Whether a value of ``leaf`` with these typer options is just ``leaf(text)``."""
    if leaf not in _PLAIN or info.parser is not None or getattr(info, "click_type", None):
        return False
    if leaf in (int, float):
        return info.min is None and info.max is None
    if leaf is Path:
        flags = (info.exists, info.writable, info.resolve_path, info.allow_dash)
        return not any(flags) and info.file_okay and info.dir_okay and info.path_type is None
    return True


def install() -> None:
    """Make typer convert plain parameters without pydantic (once per process)."""
    global _installed
    if _installed:
        return
    _installed = True
    try:
        from typer import _coercion, core
        from typer._click.exceptions import BadParameter
    except ImportError:
        return
    builtin = getattr(core, "build_runtime_param", None)
    base: Any = getattr(_coercion, "RuntimeParam", None)
    if builtin is None or base is None:
        return

    @dataclass(frozen=True)
    class Plain(base):  # type: ignore[misc]
        convert: Callable[[Any], Any] = str
        many: bool = False

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            try:
                if self.many:
                    items = value if isinstance(value, list | tuple) else [value]
                    return [self.convert(item) for item in items]
                return self.convert(value)
            except ValueError:
                kind = {int: "integer", float: "number", _bool: "boolean"}.get(
                    self.convert, "value"
                )
                raise BadParameter(
                    f"{value!r} is not a valid {kind}.", ctx=ctx, param=param
                ) from None

    def build(descriptor: Any) -> Any:
        annotation = descriptor.annotation
        many = get_origin(annotation) is list
        leaf = get_args(annotation)[0] if many else annotation
        if descriptor.file_annotation is not None or not _plain(descriptor.parameter_info, leaf):
            return builtin(descriptor)
        return Plain(
            parameter_info=descriptor.parameter_info,
            annotation=annotation,
            convert=_PLAIN[leaf],
            many=many,
        )

    core.build_runtime_param = build  # type: ignore[attr-defined]  # core imported it
