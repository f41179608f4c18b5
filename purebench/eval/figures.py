"""Purification figure: clean, adversarial, purified, and normalised |differences| (as ZeroPur Fig. 6)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import torch

COLUMNS = ("clean", "adversarial", "purified", "|adv - clean|", "|purified - adv|", "|purified - clean|")


def _normalised(diff: torch.Tensor) -> torch.Tensor:
    """Per-image |difference| summed over channels, scaled to [0, 1] for display."""
    d = diff.abs().sum(0)
    return d / d.max().clamp_min(1e-12)


def purification_grid(
    x: torch.Tensor, x_adv: torch.Tensor, purified: torch.Tensor, labels: list[str], path: Path
) -> None:
    """One row per image; the row label gives the true class and the predictions on the clean, adversarial
    and purified image (class names, as the dataset's metadata has them)."""
    n = x.shape[0]
    fig, axes = plt.subplots(n, len(COLUMNS), figsize=(1.6 * len(COLUMNS), 1.7 * n), squeeze=False)
    for i in range(n):
        images = [x[i], x_adv[i], purified[i]]
        panels = [im.permute(1, 2, 0).clamp(0, 1).cpu().numpy() for im in images]
        panels += [
            _normalised(a - b).cpu().numpy()
            for a, b in ((x_adv[i], x[i]), (purified[i], x_adv[i]), (purified[i], x[i]))
        ]
        for j, panel in enumerate(panels):
            ax = axes[i][j]
            ax.imshow(panel, cmap="viridis" if j >= 3 else None, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(COLUMNS[j], fontsize=7)
        axes[i][0].set_ylabel(labels[i], fontsize=6)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
