"""The simulation plot: processes waiting, running and done over simulated time."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and in CI

import matplotlib.pyplot as plt

from colonyp2p.simulations.engine import Result


def plot(result: Result, path: Path) -> None:
    """Write a PNG of the run's samples, with its faults marked."""
    samples = result.samples
    t = [s.t for s in samples]
    fig, ax = plt.subplots(figsize=(10, 5), dpi=110)
    ax.plot(t, [s.waiting for s in samples], label="waiting", color="tab:orange")
    ax.plot(t, [s.running for s in samples], label="running", color="tab:blue")
    ax.plot(t, [s.successful for s in samples], label="successful", color="tab:green")
    ax.plot(t, [s.failed for s in samples], label="failed", color="tab:red")
    faults = result.scenario.faults
    for i, p in enumerate(faults.partitions):
        ax.axvspan(p.at, p.heal, color="grey", alpha=0.15, label="partition" if i == 0 else None)
    if faults.crash_fraction:
        lo, hi = faults.crash_window
        ax.axvspan(lo, hi, color="tab:purple", alpha=0.05, label="crash window")
    ax.set_xlabel("simulated seconds")
    ax.set_ylabel("processes")
    verdict = "terminal" if result.terminal else "NOT terminal"
    ax.set_title(
        f"{result.scenario.name}, seed {result.seed}: {result.nodes} members, "
        f"{result.specs} specs; lost {len(result.lost)}, "
        f"duplicate results {result.duplicate_results}, {verdict}"
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="center right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
