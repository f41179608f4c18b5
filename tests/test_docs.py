"""Every `python -m purebench` / `python -m purebench.train` command in the docs and recipes composes.

Commands are read from the READMEs and the comments of experiments/*.yaml and composed with Hydra
(nothing runs), so a renamed config key or group breaks this test instead of a reader's run.
Sweeps compose with their first value, shell loop variables with the loop's first value.
"""

from __future__ import annotations

import re
import shlex

import pytest
from conftest import REPO
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from purebench.cli import CONF_DIR

DOCS = [REPO / "README.md", REPO / "results" / "README.md", REPO / "benchmarks" / "README.md",
        *sorted((REPO / "experiments").glob("*.yaml"))]  # fmt: skip
PLUGIN_ONLY = (
    "defense=bit_depth"  # composes once the example plugin package is installed (tests/test_plugin_package.py)
)
COMMAND = re.compile(r"python -m purebench(\.train)?(?![.\w])([^`#;&\n]*)")


def _commands() -> list[tuple[str, str, list[str]]]:
    found = []
    for doc in DOCS:
        lines = doc.read_text().splitlines()
        if doc.suffix == ".yaml":
            lines = [line.lstrip("#").strip() for line in lines if line.lstrip().startswith("#")]
        text = re.sub(r"\\\s*\n\s*", " ", "\n".join(lines))  # join continued lines
        loops = dict(re.findall(r"for (\w+) in (\S+)", text))
        for match in COMMAND.finditer(text):
            args = match.group(2)
            for var, first in loops.items():
                args = args.replace(f"${{{var}}}", first).replace(f"${var}", first)
            if PLUGIN_ONLY in args:
                continue
            overrides = []
            for token in shlex.split(args):
                token = token.removeprefix("[") if token.startswith("[") else token
                token = token.removesuffix("]") if token.endswith("]") and "=[" not in token else token
                if "=" not in token:
                    continue  # --multirun, placeholders such as "..."
                key, value = token.split("=", 1)
                if "," in value and not value.startswith("["):
                    value = value.split(",")[0]  # a sweep: its first value
                overrides.append(f"{key}={value}")
            found.append((str(doc.relative_to(REPO)), "train" if match.group(1) else "config", overrides))
    return found


COMMANDS = _commands()


def test_the_docs_hold_commands():
    assert len(COMMANDS) >= 30 and {name for name, _, _ in COMMANDS} >= {"README.md", "experiments/zeropur_table1.yaml"}


@pytest.mark.parametrize(
    ("doc", "config", "overrides"), COMMANDS, ids=[f"{d}:{' '.join(o)}"[:80] for d, _, o in COMMANDS]
)
def test_documented_command_composes(doc, config, overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config, overrides=overrides, return_hydra_config=True)
    ours = OmegaConf.to_container(cfg, resolve=False)
    ours.pop("hydra")  # its run-time values (job number, time) exist only in a real run
    OmegaConf.to_container(OmegaConf.create(ours), resolve=True)  # every interpolation of ours resolves
