"""A Python executor's worker process: calls its node's registered functions, one at a time.

``python -m colonyp2p.executors.worker [--node PID] [--builtin] [ENTRY ...]`` builds the same
registry as the node (``executors/python.py``) and answers calls on a private copy of
its stdin and stdout: each message is a 4-byte big-endian length and a CBOR map.

- node to worker: ``{"funcname", "args", "kwargs", "inputs"}`` and, for a run with
  sync directives (a spec's ``fs``), ``"cwd"``: the run's working directory, where the
  call runs;
- worker to node: ``{"log": line}`` for each line the function prints, then
  ``{"ok", "output", "errors"}``.

File descriptors 0 and 1 are pointed elsewhere (/dev/null and stderr) before any
function is imported, so that neither a print nor a library writing to fd 1 can corrupt
the replies, nor reading stdin swallow a call.
"""

from __future__ import annotations

import io
import os
import select
import struct
import sys
import threading
import time
from typing import Any, BinaryIO

import cbor2

HEADER = struct.Struct(">I")
MAX_FRAME = 256 * 1024 * 1024  # a call's arguments or a result; larger is refused
PARENT_CHECK = 0.2  # seconds between checks that the node is still there (no pidfd)


def read_frame(stream: BinaryIO) -> Any | None:
    """The next message, or None at the end of the stream."""
    header = _read_exactly(stream, HEADER.size)
    if header is None:
        return None
    (size,) = HEADER.unpack(header)
    if size > MAX_FRAME:
        raise ValueError(f"a frame of {size} bytes exceeds {MAX_FRAME}")
    body = _read_exactly(stream, size)
    return None if body is None else cbor2.loads(body)


def _read_exactly(stream: BinaryIO, size: int) -> bytes | None:
    # a pipe hands over what it holds: a large frame comes in pieces
    parts: list[bytes] = []
    left = size
    while left:
        part = stream.read(left)
        if not part:
            return None
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def encode_frame(message: Any) -> bytes:
    body = cbor2.dumps(message)
    return HEADER.pack(len(body)) + body


class _Lines(io.TextIOBase):
    """sys.stdout and sys.stderr of a call: each complete line goes to the node."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._partial = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            self._out.write(encode_frame({"log": line}))
        return len(text)

    def flush(self) -> None:
        self._out.flush()

    def finish(self) -> None:
        if self._partial:
            self._out.write(encode_frame({"log": self._partial}))
            self._partial = ""


def _die_with_node(node: int) -> None:
    """End when the node ends, even by SIGKILL, instead of finishing a call whose result
    nobody would receive. The node's pid comes from the node: os.getppid() is not it
    for a worker started from one of trio's threads, and PR_SET_PDEATHSIG fires when
    that thread, not the node, ends."""

    def watch() -> None:
        try:
            fd = os.pidfd_open(node)  # Linux: readable once the node has ended
        except (AttributeError, OSError):
            fd = None
        if fd is not None:
            select.select([fd], [], [])
        else:
            while _exists(node):
                time.sleep(PARENT_CHECK)
        os._exit(1)

    threading.Thread(target=watch, name="node-watch", daemon=True).start()


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def main(argv: list[str]) -> int:
    if "--node" in argv:
        at = argv.index("--node")
        _die_with_node(int(argv[at + 1]))
        del argv[at : at + 2]
    calls = os.fdopen(os.dup(0), "rb", buffering=0)
    replies = os.fdopen(os.dup(1), "wb")
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)

    from colonyp2p.executors.registry import Registry, builtin

    serve_builtin = "--builtin" in argv
    registry = builtin() if serve_builtin else Registry()
    registry.load([a for a in argv if a != "--builtin"])
    lines = _Lines(replies)
    sys.stdout = sys.stderr = lines
    while True:
        call = read_frame(calls)
        if call is None:
            return 0
        # the run's working directory, where a spec's fs directives put its files
        home = os.getcwd()
        cwd = call.get("cwd")
        if cwd and os.path.isdir(cwd):
            os.chdir(cwd)
        try:
            result = registry.call(
                call["funcname"], tuple(call["args"]), dict(call["kwargs"]), tuple(call["inputs"])
            )
        finally:
            os.chdir(home)
        lines.finish()
        try:
            reply = encode_frame(
                {"ok": result.ok, "output": list(result.output), "errors": list(result.errors)}
            )
        except Exception as exc:  # an output CBOR cannot carry
            reply = encode_frame(
                {"ok": False, "output": [], "errors": [f"the output cannot be sent: {exc}"]}
            )
        replies.write(reply)
        replies.flush()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
