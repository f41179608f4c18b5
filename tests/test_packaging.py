"""How purebench is packaged: what the wheel carries, where configs are found, which way imports run.

The full check (the wheel installed outside the checkout runs a job) is .ci/wheel_check.sh; these are the
seconds-long parts of it that can fail first.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile

from conftest import REPO
from packaging.requirements import Requirement

BUILD_INPUTS = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md")
TREES = ("purebench", "conf", "experiments")


def test_wheel_carries_configs_recipes_and_every_module(tmp_path):
    source = tmp_path / "src"
    leftovers = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for tree in TREES:  # symlinks=True: conf/experiment stays the link it is in a checkout
        shutil.copytree(REPO / tree, source / tree, symlinks=True, ignore=leftovers)
    for name in BUILD_INPUTS:
        shutil.copy2(REPO / name, source / name)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(source)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = tmp_path.glob("purebench-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())

    conf = {f"purebench/conf/{p.relative_to(REPO / 'conf')}" for p in (REPO / "conf").rglob("*.yaml")}
    recipes = {f"purebench/conf/experiment/{p.name}" for p in (REPO / "experiments").glob("*.yaml")}
    modules = {str(p.relative_to(REPO)) for p in (REPO / "purebench").rglob("*.py")}
    assert "purebench/conf/config.yaml" in conf and "purebench/conf/experiment/zeropur_table1.yaml" in recipes
    assert conf | recipes | modules <= names, sorted((conf | recipes | modules) - names)
    assert "purebench/leaderboard/templates/leaderboard.html.j2" in names
    assert {name.split("/")[0] for name in names} == {"purebench", wheel.name.split("-py")[0] + ".dist-info"}


def test_a_checkout_reads_its_own_conf():
    """An editable install (``make install``) composes the checkout's conf/, so an edited recipe needs no reinstall."""
    from purebench.config_paths import CONF_DIR

    assert CONF_DIR == REPO / "conf"
    assert (CONF_DIR / "experiment" / "zeropur_table1.yaml").is_file()


def test_imports_run_one_way_and_need_no_fcntl():
    """Nothing below the CLI imports it (configs are found through purebench.config_paths, the summary lives in
    the leaderboard), and purebench imports where fcntl does not exist (Windows): the board's lock is filelock."""
    code = (
        "import sys; sys.modules['fcntl'] = None\n"
        "import purebench.eval.runner, purebench.leaderboard.__main__, purebench.train.__main__, "
        "purebench.defenses.checkpoint_config, purebench.api; print('purebench.cli' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.stdout.strip() == "False", done.stderr[-2000:]


def _normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _locked_pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        if match := re.match(r"([A-Za-z0-9_.-]+)==(\S+)", line):
            pins[_normalised(match[1])] = match[2]
    return pins


def test_declared_ranges_admit_the_lock():
    """pyproject.toml declares ranges (purebench installs beside other tools' pins); requirements.lock pins one
    version of each, which ``make install`` installs. Every range must admit its pin."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    declared = [Requirement(r) for r in [*project["dependencies"], *extras["dev"], *extras["robustbench"]]]
    pins = _locked_pins()
    for req in declared:
        name = _normalised(req.name)
        assert name in pins, f"{req.name} is declared but not pinned in requirements.lock"
        assert req.specifier.contains(pins[name]), f"requirements.lock pins {req.name}=={pins[name]}, outside {req}"


def test_packages_installed_without_deps_find_theirs_in_the_lock():
    """``make install`` puts torchattacks and robustbench in with ``--no-deps`` (their pins clash with the lock);
    whatever they import must then come from requirements.lock, or a clean clone fails where this checkout,
    holding an older install, passes (robustbench needs pandas: CI caught it after pandas left the lock)."""
    from importlib.metadata import requires

    no_deps = re.findall(r"--no-deps ([A-Za-z0-9_.-]+)==", (REPO / "Makefile").read_text())
    assert {"torchattacks", "robustbench"} <= set(no_deps)
    pins = _locked_pins()
    for package in no_deps:
        needed = [Requirement(r) for r in requires(package) or []]
        missing = [str(r) for r in needed if r.marker is None and _normalised(r.name) not in pins]
        assert not missing, f"{package} needs {missing}, which requirements.lock does not pin"
