"""Every `python -m purebench` / `python -m purebench.train` command in the docs and recipes composes.

Commands are read from the READMEs and the comments of experiments/*.yaml and composed with Hydra
(nothing runs), so a renamed config key or group breaks this test instead of a reader's run.
Every value of a command-line sweep composes (one at a time) and so does every value a recipe sweeps
in hydra.sweeper.params; shell loop variables take the loop's first value.
"""

from __future__ import annotations

import re
import shlex
from collections import Counter

import pytest
from conftest import REPO
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from purebench.config_paths import CONF_DIR

DOCS = [REPO / "README.md", REPO / "results" / "README.md", REPO / "benchmarks" / "README.md",
        *sorted((REPO / "experiments").glob("*.yaml"))]  # fmt: skip
PLUGIN_ONLY = (
    "defense=bit_depth"  # composes once the example plugin package is installed (tests/test_plugin_package.py)
)
COMMAND = re.compile(r"python -m purebench(\.train)?(?![.\w])([^`#;&\n]*)")


def _sweep_variants(overrides: list[str]) -> list[list[str]]:
    """The overrides with every sweep at its first value, then each other sweep value in turn."""
    sweeps = {i: o.split("=", 1) for i, o in enumerate(overrides) if "," in o.partition("=")[2] and "=[" not in o}
    base = [f"{sweeps[i][0]}={sweeps[i][1].split(',')[0]}" if i in sweeps else o for i, o in enumerate(overrides)]
    variants = [base]
    for i, (key, values) in sweeps.items():
        variants += [[*base[:i], f"{key}={value}", *base[i + 1 :]] for value in values.split(",")[1:]]
    return variants


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
                args = re.sub(rf"\$\{{{var}\}}|\${var}(?!\w)", first, args)
            if PLUGIN_ONLY in args:
                continue
            overrides = []
            for token in shlex.split(args):
                token = token.removeprefix("[") if token.startswith("[") else token
                token = token.removesuffix("]") if token.endswith("]") and "=[" not in token else token
                if "=" in token or token.startswith("~"):  # ~key deletes a key (Hydra's override grammar)
                    overrides.append(token)
                else:  # only --multirun and prose placeholders ("...") carry no override
                    assert token in ("--multirun", "..."), f"{doc}: unexpected argument {token!r} in {args!r}"
            name = str(doc.relative_to(REPO))
            found += [(name, "train" if match.group(1) else "config", v) for v in _sweep_variants(overrides)]
    return found


COMMANDS = _commands()


def test_the_docs_hold_commands():
    per_doc = Counter(name for name, _, _ in COMMANDS)
    assert per_doc["README.md"] >= 15 and per_doc["results/README.md"] >= 15, per_doc
    assert all(per_doc[f"experiments/{p.name}"] >= 1 for p in (REPO / "experiments").glob("*.yaml")), per_doc


@pytest.mark.parametrize(
    ("doc", "config", "overrides"), COMMANDS, ids=[f"{d}:{' '.join(o)}"[:80] for d, _, o in COMMANDS]
)
def test_documented_command_composes(doc, config, overrides):
    for cfg in _compose_sweep(config, overrides):
        ours = OmegaConf.to_container(cfg, resolve=False)
        ours.pop("hydra")  # its run-time values (job number, time) exist only in a real run
        OmegaConf.to_container(OmegaConf.create(ours), resolve=True)  # every interpolation of ours resolves


def _compose_sweep(config: str, overrides: list[str]) -> list[DictConfig]:
    """The composed config, and one per value of the sweeps a recipe declares in hydra.sweeper.params
    (a key the command line sets itself replaces the recipe's sweep, as in Hydra's basic sweeper)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config, overrides=overrides, return_hydra_config=True)
        configs = [cfg]
        given = {o.split("=", 1)[0] for o in overrides}
        for key, values in (cfg.hydra.sweeper.get("params") or {}).items():
            if key in given:
                continue
            configs += [
                compose(config, overrides=[*overrides, f"{key}={value}"], return_hydra_config=True)
                for value in str(values).split(",")
            ]
    return configs
