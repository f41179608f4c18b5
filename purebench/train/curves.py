"""``python -m purebench.train.curves CKPT [CKPT ...] --out FIG.png``: training curves from checkpoints.

Every checkpoint stores its per-epoch history (losses, validation SA/RA, seconds), so the curves
of a run can be drawn at any time, also from a run still in progress or a slim exported file.
Prints one Markdown table per checkpoint and writes one figure: the loss terms (left) and the
validation SA/RA (right) against epochs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from purebench.train import checkpoint

VALIDATION = ("val_sa", "val_ra")


def _columns(history: list[dict]) -> list[str]:
    """Every key any epoch logged, in order of appearance (the CE term and validation may start late)."""
    return [k for k in dict.fromkeys(k for h in history for k in h) if k not in ("epoch", "seconds")]


def history_table(name: str, history: list[dict]) -> str:
    """The per-epoch history as a Markdown table."""
    keys = _columns(history)
    lines = [f"**{name}**", "", "| epoch | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    lines += [f"| {h['epoch']} | " + " | ".join(str(h.get(k, "")) for k in keys) + " |" for h in history]
    return "\n".join(lines)


def plot(histories: dict[str, list[dict]], out: Path) -> None:
    fig, (loss_ax, val_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for name, history in histories.items():
        epochs = [h["epoch"] for h in history]
        numeric = [k for k in _columns(history) if all(isinstance(h.get(k), int | float | None) for h in history)]
        for key in [k for k in numeric if k not in VALIDATION]:  # not validated_with: settings, not a curve
            loss_ax.plot(epochs, [h.get(key) for h in history], label=f"{name}: {key}")
        for key in VALIDATION:
            val_ax.plot(
                epochs, [h.get(key) for h in history], label=f"{name}: {key}", ls="-" if key == "val_sa" else "--"
            )
    loss_ax.set(xlabel="epoch", ylabel="training loss", yscale="log", title="loss")
    val_ax.set(xlabel="epoch", ylabel="% of held-out training images", title="validation SA (solid) / RA (dashed)")
    for ax in (loss_ax, val_ax):
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, required=True, help="figure to write (PNG)")
    args = parser.parse_args(argv)
    histories = {path.stem: checkpoint.load(path)["history"] for path in args.checkpoints}
    for name, history in histories.items():
        print(history_table(name, history), end="\n\n")
    plot(histories, args.out)
    print(f"figure: {args.out}")


if __name__ == "__main__":
    main()
