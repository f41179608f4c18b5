"""SA-RA scatter of the leaderboard: where each defense sits between accuracy and robustness."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt


def sa_ra_scatter(rows: Sequence[dict[str, str]], path: Path) -> None:
    """One marker per row, one colour per threat model; defense and classifier label each point."""
    fig, ax = plt.subplots(figsize=(7, 5))
    threats = sorted({r["threat_model"] for r in rows})
    for threat, colour in zip(
        threats, plt.cm.viridis([i / max(1, len(threats) - 1) for i in range(len(threats))]), strict=True
    ):
        members = [r for r in rows if r["threat_model"] == threat]
        ax.scatter(
            [float(r["sa"]) for r in members], [float(r["ra"]) for r in members], label=threat, color=colour, alpha=0.8
        )
        for r in members:
            ax.annotate(f"{r['defense']}/{r['classifier']}", (float(r["sa"]), float(r["ra"])), fontsize=6, alpha=0.7)
    ax.set(xlabel="SA (%)", ylabel="RA (%)", xlim=(0, 100), ylim=(0, 100), title="purebench: SA vs RA")
    ax.legend(title="threat model", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
