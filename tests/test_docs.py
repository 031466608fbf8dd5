"""Every shell and Python block of README.md and docs/*.md runs, in order, against one
real local colony (tests/docs_runner.py says how), so that a doc that drifts fails."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from docs_runner import ROOT, Block, Colony, DocError, blocks, doc_files, matches

# one worker, in document order: the blocks share the colony the first ones make
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("docs")]

BLOCKS = [block for path in doc_files() for block in blocks(path)]


@pytest.fixture(scope="module")
def colony(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Colony]:
    c = Colony(tmp_path_factory.mktemp("newcomer"))
    try:
        yield c
    finally:
        c.shutdown()


@pytest.mark.parametrize("block", BLOCKS, ids=[b.where for b in BLOCKS])
def test_block(block: Block, colony: Colony) -> None:
    if block.skip is not None:
        pytest.skip(block.skip)
    colony.run(block)


def test_every_doc_has_blocks_and_skips_say_why() -> None:
    where = {b.path.relative_to(ROOT).as_posix() for b in BLOCKS}
    assert {"README.md", "docs/MFS.md", "docs/PYTHON_API.md", "docs/SIMULATOR.md"} <= where
    assert all(b.skip for b in BLOCKS if b.skip is not None)


def test_the_runner_reads_directives_and_refuses_mistakes(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(
        "text\n\n<!-- doc-test: home b -->\n<!-- doc-test: fresh -->\n```sh\nls\n```\n\n"
        "<!-- doc-test: skip (needs a second device) -->\n```python\nx = 1\n```\n"
        "```toml\n[a]\n```\n",
        encoding="utf-8",
    )
    found = blocks(doc)
    assert [(b.language, b.home, b.fresh, b.skip) for b in found] == [
        ("sh", "b", True, None),
        ("python", "~", False, "needs a second device"),
    ]
    for bad in (
        "<!-- doc-test: skip -->\n```sh\nls\n```\n",  # no reason
        "<!-- doc-test: hme b -->\n```sh\nls\n```\n",  # no such directive
        "<!-- doc-test: fresh -->\n\nsome prose\n```sh\nls\n```\n",  # not above the block
        "```sh\nls\n",  # never closed
        "```\nls\n```\n",  # no language: would not run
    ):
        doc.write_text(bad, encoding="utf-8")
        with pytest.raises(DocError):
            blocks(doc)


def test_expected_output_matching() -> None:
    assert matches("error: process ... is running", "error: process 1f2e is running\n")
    assert matches("a\n...\nc", "a\nb\nb\nc  \n")
    assert not matches("error: x", "error: y")
    assert not matches("a\nc", "a\nb\nc")
