"""The Celery app of the comparison: a Redis broker and result backend on loopback (the
URL in COMPARE_REDIS_URL), late acknowledgement, the shared functions of tasks.py.

Workers: ``celery -A bench.compare.celery_app worker`` with the repository on PYTHONPATH.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from bench.compare import tasks

REDIS = os.environ.get("COMPARE_REDIS_URL", "redis://127.0.0.1:6379")
# How long an unacknowledged (late-acked) message stays with a worker that went quiet
# before a sweep by another worker puts it back in the queue. Kombu's defaults: a one-hour
# visibility timeout, swept about every 100 s (every 10th call, every 10 s); here the
# timeout is colonyp2p's default lease (10 s) and every worker sweeps every second. A task
# that runs longer than the timeout is then given to a second worker while it still runs.
VISIBILITY_TIMEOUT = float(os.environ.get("COMPARE_VISIBILITY_TIMEOUT", "10"))

app: Any = importlib.import_module("celery").Celery(
    "compare", broker=f"{REDIS}/0", backend=f"{REDIS}/1"
)
app.conf.update(
    task_acks_late=True,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json", "pickle"],
    broker_transport_options={
        "visibility_timeout": VISIBILITY_TIMEOUT,
        "unacked_restore_interval": 1,
        "unacked_restore_throttle": 1,
    },
    result_expires=3600,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)

noop = app.task(name="noop")(tasks.noop)
add = app.task(name="add")(tasks.add)
total = app.task(name="total")(tasks.total)
attempt = app.task(name="attempt")(tasks.attempt)
checksum = app.task(name="checksum")(tasks.checksum)
