"""Where the Hydra config tree is, in a checkout and in an installed wheel.

The configs live at the repository's top level (``conf/``, with ``conf/experiment`` a link to
``experiments/``), where users edit and read them. A wheel carries the same files inside the
package, as ``purebench/conf/`` with the recipes as ``purebench/conf/experiment/`` (copied there
by setup.py's build step), because a wheel has no top level to put them in.
This module is the one place that knows both layouts, so the CLI, the trainer, the leaderboard
and the checkpoint settling all compose the same tree and none of them imports the CLI for it.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
# Checked first: only an installed wheel has it, so a checkout (editable install included) never
# reads a stale copy, and an installed package never reads a stray conf/ beside site-packages.
_INSTALLED = _PACKAGE / "conf"

CONF_DIR = _INSTALLED if (_INSTALLED / "config.yaml").is_file() else _PACKAGE.parent / "conf"
"""The primary config directory (``config.yaml``, ``train.yaml``, the config groups and the
``+experiment=NAME`` recipes in ``experiment/``: in a checkout the link to ``experiments/``, installed
a plain folder)."""
