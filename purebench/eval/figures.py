"""Purification figure: clean, adversarial, purified, and normalised |differences| (as ZeroPur Fig. 6)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import torch

COLUMNS = ("clean", "adversarial", "purified", "|adv - clean|", "|purified - adv|", "|purified - clean|")


def _normalised(diff: torch.Tensor) -> torch.Tensor:
    """One panel's |difference| summed over channels, scaled to [0, 1] by its own largest for display."""
    d = diff.abs().sum(0)
    return d / d.max().clamp_min(1e-12)


def purification_grid(
    x: torch.Tensor, x_adv: torch.Tensor, purified: torch.Tensor, labels: list[str], path: Path, title: str = ""
) -> None:
    """One row per image; the row label gives the true class and the predictions on the clean, adversarial
    and purified image (class names, as the dataset's metadata has them). ``title`` names the run (defense,
    attack, threat, budget), so a figure opened on its own says what it shows; the colour bar reads the
    difference columns, each panel's |difference| scaled to its own largest."""
    n = x.shape[0]
    fig, axes = plt.subplots(n, len(COLUMNS), figsize=(1.6 * len(COLUMNS), 1.7 * n + 0.8), squeeze=False)
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
    fig.suptitle(textwrap.fill(title, 110), fontsize=7)
    height = fig.get_size_inches()[1]
    fig.tight_layout(rect=(0, 0.7 / height, 1, 1))  # room under the grid for the colour bar
    left, right = axes[-1][3].get_position().x0, axes[-1][-1].get_position().x1
    bar = fig.colorbar(
        axes[-1][-1].images[0],
        cax=fig.add_axes((left, 0.4 / height, right - left, 0.08 / height)),
        orientation="horizontal",
    )
    bar.set_label("|difference| / the largest in its panel (each panel scaled on its own)", fontsize=6)
    bar.ax.tick_params(labelsize=5)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
