"""A fault harness for real colonynode daemons (issue 17, item 1): daemons in network
namespaces (or on loopback where namespaces are not permitted), a seeded schedule of
faults (partitions, SIGKILL and restart, SIGSTOP longer than a lease, packet loss,
bandwidth, clock skew, a full disk), a workload of specs and workflows from several
clients, a JSON-lines history of all of it and a checker that reads only that history.

Modules, each named for what it holds: ``topology`` (where the daemons live and what the
network does to them), ``schedule`` (the seeded list of timed faults), ``faults`` (carrying
one fault out), ``workload`` (the clients), ``history`` (the record), ``checker`` (what
must hold), ``report`` (figures, plot, bench/results/FAULTS.md) and ``run`` (one run from
set-up to teardown). The command is bench/bench_faults.py; results and how to read them
are in bench/results/FAULTS.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

# tests/cluster.py and tests/netns.py are the daemons' and namespaces' harness: imported,
# not copied (the benches do the same)
_TESTS = str(Path(__file__).resolve().parents[2] / "tests")
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)
