"""``python -m purebench`` / ``purebench``: the Hydra entry point of the evaluation runner.

User mistakes (:class:`PurebenchError`) print one paragraph and exit with status 2; Hydra
itself reports unknown config-group options with the list of available ones.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from purebench.config_paths import CONF_DIR
from purebench.errors import PurebenchError

log = logging.getLogger("purebench")


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> dict | None:
    from purebench.eval.runner import evaluate_run
    from purebench.leaderboard.summary import print_summary

    try:
        run = evaluate_run(cfg)
    except PurebenchError as exc:
        log.error("%s", exc)
        print(f"purebench: error: {exc}", file=sys.stderr)
        sys.exit(2)
    print_summary(run["row"], Path(str(cfg.results_dir)), run["run_file"].get("figure"), run.get("skipped", False))
    return run["row"]
