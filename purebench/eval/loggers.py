"""Optional experiment loggers; results_dir stays the record of truth, a logger only mirrors it."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from purebench.errors import PurebenchError

LOGGERS = ("none", "wandb")


def check_logger(logger: dict[str, Any]) -> None:
    """Refuse an unknown logger, or wandb where it is not installed, before any compute: found only
    after the row is published, the error made users re-run and add a duplicate row."""
    if logger["name"] not in LOGGERS:
        raise PurebenchError(
            f"logger={logger['name']} is not a logger purebench has; use one of {', '.join(LOGGERS)} "
            "(logger=none keeps results_dir as the only record)."
        )
    if logger["name"] == "wandb" and importlib.util.find_spec("wandb") is None:
        raise PurebenchError("logger=wandb needs the wandb package: `pip install wandb`, or use logger=none.")


def log_run(
    logger: dict[str, Any], row: dict[str, Any], config: dict[str, Any], figure: Path | None, out_dir: Path
) -> None:
    """Send one finished run to the configured logger (``logger=none`` does nothing)."""
    if logger["name"] == "none":
        return
    import wandb

    run = wandb.init(
        project=logger["project"], mode=logger["mode"], dir=str(out_dir), config=config, name=row["run_id"]
    )
    run.log({k: v for k, v in row.items() if isinstance(v, int | float) and not isinstance(v, bool)})
    if figure is not None and figure.exists():
        run.log({"purification": wandb.Image(str(figure))})
    run.finish()
