"""Settings for every test."""

from __future__ import annotations

import os

import pytest

# The daemons and CLI processes the tests start keep their compiled bytecode (in the
# __pycache__ folders git ignores): with PYTHONDONTWRITEBYTECODE, as some environments
# set it, every one of them compiled the project's modules anew, a good part of a
# daemon's start-up on a busy machine.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep ``--dist loadgroup``'s groups together. pytest-xdist (3.8) names a test's
    xdist_group in its node id, the suffix "@group" its scheduler reads, by setting
    ``Item._nodeid``, which pytest 9 no longer reads: every group was spread over the
    workers like ungrouped tests (the Slurm tests too, and a module's tests that share a
    cluster each made their own). The suffix is put where pytest 9 keeps the id."""
    if not getattr(config.option, "loadgroup", False):
        return
    for item in items:
        names = {
            str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
            for mark in item.iter_markers("xdist_group")
        }
        suffix = "@" + "_".join(sorted(names))
        if names and not item.nodeid.endswith(suffix):
            item._id = type(item._id).parse(item.nodeid + suffix)
