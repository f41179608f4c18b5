#!/usr/bin/env bash
# Run HERE (the development machine, with pip access) before a session's device run: puts into .gpu/
# (ignored by git, carried to the device machine) the wheels the device image lacks and the data the
# checks read. Then: device run `bash benchmarks/gpu_check.sh` with carry [".gpu"] (see benchmarks/README).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${PUREBENCH_DATA:-../shared/data}
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
rm -rf .gpu && mkdir -p .gpu/whl .gpu/data/cifar10-subsets .gpu/data/cifar-10-batches-py
# Pure-Python packages purebench needs beyond the device image (torch, numpy, tqdm, matplotlib are there).
# (the project's pins, pyproject.toml; the image has huggingface-hub, safetensors, regex, filelock, pillow, scipy)
PURE="hydra-core==1.3.8 omegaconf==2.3.1 pyautoattack==0.2.0 torchattacks==3.5.1 kornia==0.9.0 diffusers==0.42.1 importlib_metadata==10.2.0"
python3 -m pip download -q --no-deps -d .gpu/whl $PURE
python3 -m pip wheel -q --no-deps -w .gpu/whl antlr4-python3-runtime==4.9.3   # published as an sdist only
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .gpu/whl kornia_rs==0.2.0
# pyautoattack without the 45 MB ResNet-18 checkpoint its wheel carries (the GPU checks use resnet20 and an
# untrained resnet18 for throughput), so that the tree and .gpu stay under the device tool's 64 MiB
python3 - <<'PY'
import pathlib, zipfile
wheel = next(pathlib.Path(".gpu/whl").glob("pyautoattack-*.whl"))
slim = wheel.with_suffix(".slim")
with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(slim, "w", zipfile.ZIP_DEFLATED) as dst:
    for item in src.infolist():
        if not item.filename.endswith((".pt", ".h5")):
            dst.writestr(item, src.read(item))
slim.replace(wheel)
PY
cp "$DATA"/cifar10-subsets/*.npz .gpu/data/cifar10-subsets/
cp "$DATA"/cifar-10-batches-py/batches.meta .gpu/data/cifar-10-batches-py/
cp -r "$DATA"/weights .gpu/data/
[ -f "$DATA/README.md" ] && cp "$DATA/README.md" .gpu/data/
du -sh .gpu .gpu/*
