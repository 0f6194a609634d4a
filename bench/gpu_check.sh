#!/usr/bin/env bash
# The GPU check: everything that needs a CUDA device, in one script, at most 7.5 minutes (the
# sum of the step limits below) on an H100. From the repository root on a GPU machine:
#   set -o pipefail; bash bench/gpu_check.sh 2>&1 | tee "${OUT:-.}/gpu_check.log"
#   1. the device, its driver and PyTorch's view of it; without a CUDA device it stops here
#      with exit 1 (every later step would skip and pass, having checked nothing);
#   2. the GPU tests (tests/test_gpu.py: bf16 + channels_last steps against the CPU, the
#      recipes' optimizers on the device, the seeded augmentations and the loop's telemetry on
#      the device, and pretraining through FFCV where ffcv and dvclive are installed);
#   3. the throughput benchmark (bench/gpu.py: BYOL and MoCo v3, ResNet-18 at 32 px), eager,
#      then eager under compute.deterministic (its cost: the ratio of the two figures; two
#      deterministic runs' weights compared in step 2, tests/test_compute.py), and BYOL with
#      torch.compile (one cold compile fits its limit);
#   4. one epoch of the CIFAR-10 recipe (params/cifar10.yaml) on synthetic CIFAR-format images
#      for BYOL and SimCLR, bf16 and channels_last, with images/s and peak GPU memory
#      (bench/gpu_recipe.py).
# Steps 3 and 4 print each method's figure as soon as it is measured, so a step stopped by its
# limit keeps what it measured. It uses .venv/bin/python when there is one, else $PYTHON or
# python3 (a GPU machine's own PyTorch will do: the steps need torch, torchvision, numpy,
# pyyaml, tqdm, psutil and pytest). Each step runs under its own time limit; the script goes on
# after a failed step and exits 1 if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
failed=0
step() {
  local limit=$1; shift
  echo "== $* (limit ${limit}s)"
  local started=$SECONDS
  timeout "$limit" "$@"
  local rc=$?
  echo "-- rc $rc after $((SECONDS - started))s"
  [ "$rc" -eq 0 ] || failed=1
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader \
  || echo "nvidia-smi: not found"
step 30 "$PY" -c "import sys, torch; print('python', sys.version.split()[0], 'torch', \
torch.__version__, 'CUDA', torch.version.cuda, 'device', \
torch.cuda.get_device_name() if torch.cuda.is_available() else None); \
sys.exit(0 if torch.cuda.is_available() else 'no CUDA device visible: nothing to check')"
if [ "$failed" -ne 0 ]; then exit 1; fi
step 90 "$PY" -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_compute.py \
  -k "gpu or cuda"
step 60 "$PY" bench/gpu.py --steps 30
step 60 "$PY" bench/gpu.py --steps 30 --deterministic
step 120 "$PY" bench/gpu.py --steps 30 --compile --methods byol
step 90 "$PY" bench/gpu_recipe.py --params params/cifar10.yaml --methods byol,simclr
exit $failed
