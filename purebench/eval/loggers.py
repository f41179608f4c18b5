"""Optional experiment loggers; results_dir stays the record of truth, a logger only mirrors it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from purebench.errors import PurebenchError

LOGGERS = ("none", "wandb")


def log_run(
    logger: dict[str, Any], row: dict[str, Any], config: dict[str, Any], figure: Path | None, out_dir: Path
) -> None:
    """Send one finished run to the configured logger (``logger=none`` does nothing)."""
    if logger["name"] == "none":
        return
    if logger["name"] != "wandb":
        raise PurebenchError(f"logger must be one of {', '.join(LOGGERS)}, got '{logger['name']}'.")
    import wandb

    run = wandb.init(
        project=logger["project"], mode=logger["mode"], dir=str(out_dir), config=config, name=row["run_id"]
    )
    run.log({k: v for k, v in row.items() if isinstance(v, int | float) and not isinstance(v, bool)})
    if figure is not None and figure.exists():
        run.log({"purification": wandb.Image(str(figure))})
    run.finish()
