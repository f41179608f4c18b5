#!/usr/bin/env bash
# The GPU checks of issue 15, run AS IS on a device machine (at most about 8 minutes on one GPU):
#   device run: command "bash benchmarks/gpu_check.sh", carry [".gpu"], timeout_s 560
# after `bash benchmarks/gpu_prepare.sh` here. Prints one Markdown table (the card, then one row per
# measurement) to stdout; progress and errors go to stderr. A check that fails or runs out of its time
# slot prints a row saying so and the script goes on.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -d .gpu/whl ]; then  # the wheels the device image lacks (benchmarks/gpu_prepare.sh)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl >&2
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
export PUREBENCH_DATA=${PUREBENCH_DATA:-$([ -d .gpu/data ] && echo "$PWD/.gpu/data" || echo "$PWD/../shared/data")}
PY=${PYTHON:-python3}
card=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)
torch_version=$($PY -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda)' 2>/dev/null)
echo "| check | setting | measured | | result |"
echo "|---|---|---|---|---|"
echo "| card | ${card:-no GPU found} | torch ${torch_version:-missing} | commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown) | |"

check() {  # check SECONDS NAME COMMAND...: the command's Markdown rows, or one row saying why there are none
  local limit=$1 name=$2; shift 2
  local out rc
  out=$(timeout "$limit" "$@" 2> >(tail -n 20 >&2))
  rc=$?
  grep '^| ' <<<"$out" || true
  if [ $rc -ne 0 ]; then echo "| $name | \`$*\` | failed (exit $rc$([ $rc -eq 124 ] && echo ", over ${limit} s")) | | see stderr |"; fi
}

check 90 "default main job" $PY -m benchmarks.main_job --device cuda --repeats 1
check 90 "speed switches" $PY -m benchmarks.speed_switches cuda
check 40 "ZeroPur throughput" $PY -m benchmarks.zeropur_throughput cuda resnet18 128 classifier.pretrained=false
check 170 "EOT loop vs batched" $PY -m benchmarks.eot_batching cuda
check 90 "training steps" $PY -m benchmarks.train_step cuda
