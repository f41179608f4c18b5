#!/usr/bin/env bash
# The wheel works where it is installed, not only in this checkout: build it from the tracked files, install
# it into a fresh virtual environment outside the checkout, and from another folder run a small job, render
# its leaderboard, and compose an +experiment= recipe and a training config. The environment reuses .venv's
# packages (the lock's exact pins) through a .pth file instead of downloading torch again: what this checks
# is the distribution (configs, recipes, templates, entry points), not the resolver (tests/test_packaging.py
# checks that the declared ranges admit the lock). `make wheel-check` runs it with PUREBENCH_DATA set.
set -euo pipefail
: "${PUREBENCH_DATA:?set PUREBENCH_DATA to the data folder (make wheel-check sets it)}"
repo="$(cd "$(dirname "$0")/.." && pwd)"
python="$repo/.venv/bin/python"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# A copy of the tracked files: an in-place build would leave build/ in the checkout and could ship a stale
# module from an earlier build.
mkdir -p "$work/src" && git -C "$repo" ls-files -z | (cd "$repo" && xargs -0 cp -P --parents -t "$work/src")
"$python" -m pip wheel -q --no-deps --no-build-isolation -w "$work/dist" "$work/src"

"$python" -m venv --without-pip "$work/venv"  # .venv's pip installs into it (--python): no ensurepip
site="$("$work/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"
"$python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))' >"$site/lock_packages.pth"
# --ignore-installed: .venv's editable purebench is visible through the .pth file; it must stay untouched.
"$python" -m pip --python "$work/venv/bin/python" install -q --no-deps --ignore-installed "$work"/dist/purebench-*.whl

mkdir "$work/elsewhere" && cd "$work/elsewhere"
"$work/venv/bin/python" - "$site" <<'EOF'
import sys

import purebench
from purebench.config_paths import CONF_DIR

assert purebench.__file__.startswith(sys.argv[1]), f"imported {purebench.__file__}, not the installed wheel"
assert CONF_DIR.is_relative_to(sys.argv[1]) and (CONF_DIR / "experiment" / "zeropur_table1.yaml").is_file(), CONF_DIR
EOF
"$work/venv/bin/purebench" defense=gaussian_blur attack=fgsm n_examples=8 threads=1 figures=0 \
    results_dir="$work/results" hydra.run.dir="$work/outputs" >"$work/job.log" 2>&1 || { cat "$work/job.log"; exit 1; }
grep -q gaussian_blur "$work/results/leaderboard.csv"
"$work/venv/bin/python" -m purebench.leaderboard results_dir="$work/results" >"$work/board.log" 2>&1 || { cat "$work/board.log"; exit 1; }
"$work/venv/bin/python" -m purebench +experiment=zeropur_table1 --cfg job >"$work/recipe.yaml"
grep -q "name: zeropur" "$work/recipe.yaml"
"$work/venv/bin/python" -m purebench.train defense=atop --cfg job >"$work/train.yaml"
grep -q "stage: pretrain" "$work/train.yaml"
echo "wheel check: $(basename "$work"/dist/purebench-*.whl) installed outside the checkout runs a job and its" \
    "leaderboard, and composes a recipe and a training config"
