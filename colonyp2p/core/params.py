"""Protocol timing and sizing. One set for the daemon and the simulator; scenarios override."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Params:
    keepers: int = 5  # k: replicas of each process record (fewer in tiny colonies)
    lease_seconds: float = 10.0  # a lease lasts this long without renewal
    renew_every: float = 3.0  # the holder renews this often
    request_timeout: float = 1.0  # resend a request not answered by a majority in this time
    tick: float = 1.0  # keeper maintenance period
    claim_slot: float = 0.5  # executors ranked n-th wait n slots before claiming
    claim_fanout: int = 2  # executors expected per slot (rendezvous ranking)
    candidate_slots: int = 6  # an executor ignores processes it ranks beyond this many slots
    reannounce_after: float = 8.0  # a keeper announces a still-waiting process again after this
    query_after: float = 15.0  # a keeper asks its peers about an undecided, quiet record
    stagger: float = 2.0  # keeper of rank r acts r*stagger after the first (failover)
    submit_retry: float = 1.0
    max_inflight_per_keeper: int = 256
    # Per submitter, at each keeper: records not yet decided (bounds what one member's
    # valid key makes others store) and new records a second after a burst.
    max_waiting_per_submitter: int = 200_000
    store_rate: float = 2_000.0
    store_burst: float = 50_000.0
