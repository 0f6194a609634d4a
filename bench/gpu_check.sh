#!/usr/bin/env bash
# The GPU check: everything that needs a CUDA device, in one script, at most 8 minutes (the sum
# of the step limits below) on an H100. From the repository root on a GPU machine:
#   set -o pipefail; bash bench/gpu_check.sh 2>&1 | tee "${OUT:-.}/gpu_check.log"
#   1. the device, its driver and PyTorch's view of it; without a CUDA device it stops here
#      with exit 1 (every later step would skip and pass, having checked nothing);
#   2. the packages (bench/gpu_setup.py): the machine gets the working tree without .venv, so
#      what pyproject.toml names beyond torch and torchvision (the machine's CUDA builds, kept)
#      is checked, and what is missing is installed into .gpu-venv, which the later steps use;
#   3. the GPU tests (tests/test_gpu.py and the CUDA test of tests/plumbing/test_compute.py): a
#      bf16 + channels_last step of five methods against the CPU's fp32 step with the recipes'
#      optimizers, each precision (bf16, fp16 with its scaler, fp32) with its loss in fp32, two
#      deterministic runs' weights to the bit, the seeded views on the device against the CPU's,
#      the loop's telemetry, and pretraining through FFCV;
#   4. images/s per method at its CIFAR-10 recipe (bench/gpu_recipe.py --methods all: ResNet-18,
#      the recipe's optimizer and schedules, views from the seeded augmentations on the device);
#   5. claim 7's throughput (bench/gpu.py: BYOL and MoCo v3, ResNet-18 at 32 px, batch 512);
#   6. the same for BYOL under compute.deterministic (its cost: the ratio to step 5's figure);
#   7. the DAG end to end (bench/gpu_study.py): a scaled-down CIFAR-shaped study, its images
#      read as JPEG through FFCV onto the GPU, run by snakemake --resources gpu=1.
# Steps 4 to 7 print each figure as soon as it is measured, so a step stopped by its limit keeps
# what it measured. Python: $PYTHON, else .venv/bin/python when there is one, else python3 (a
# GPU machine's own, with its torch); from step 3 on, .gpu-venv/bin/python if step 2 made it.
# Each step runs under its own time limit; the script goes on after a failed step and exits 1
# if any failed. tests/test_gpu_check.py holds this script, its steps' files, tests and flags,
# and docs/GPU.md's table to one another on the CPU.
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
step 20 "$PY" -c "import sys, torch; print('python', sys.version.split()[0], 'torch', \
torch.__version__, 'CUDA', torch.version.cuda, 'device', \
torch.cuda.get_device_name() if torch.cuda.is_available() else None); \
sys.exit(0 if torch.cuda.is_available() else 'no CUDA device visible: nothing to check')"
if [ "$failed" -ne 0 ]; then exit 1; fi
step 90 "$PY" bench/gpu_setup.py --venv .gpu-venv
if [ -x .gpu-venv/bin/python ]; then PY=.gpu-venv/bin/python; fi
step 90 "$PY" -m pytest -q -s -p no:cacheprovider tests/test_gpu.py \
  tests/plumbing/test_compute.py tests/stages/test_host_syncs.py -k "gpu or cuda"
step 80 "$PY" bench/gpu_recipe.py --params params/cifar10.yaml --methods all --images 10240
step 40 "$PY" bench/gpu.py --steps 30
step 30 "$PY" bench/gpu.py --steps 20 --deterministic --methods byol
step 130 "$PY" bench/gpu_study.py --runs byol-full
exit $failed
