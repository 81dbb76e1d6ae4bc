#!/usr/bin/env bash
# Everything that needs a GPU, in one go (about 6 minutes on one H200 once installed):
#   1. the default experiment (`python train.py`, which picks the GPU fast path by itself),
#   2. the GPU tests (tests/gpu, skipped on machines without CUDA),
#   3. the GPU benchmark (ResNet-50, 224 px, synthetic data: fp32/bf16, channels_last, our
#      Trainer path against a raw loop, then torch.compile).
# Results go to ${OUT:-outputs/gpu_check}: gpu.txt, train.log, gpu_tests.log, benchmark.{log,json}.
# PY=python3 uses an existing interpreter instead of creating .venv (a machine without internet
# whose Python already has torch; add what it lacks to PYTHONPATH).
# Each part has its own time limit and a failed part does not stop the next one.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-outputs/gpu_check}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
if [ -z "${PY:-}" ]; then
  make install >/dev/null
  PY=.venv/bin/python
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
$PY -c "import torch, lightning, timm; print('torch', torch.__version__, 'lightning', lightning.__version__, 'timm', timm.__version__)" | tee -a "$OUT/gpu.txt"

echo "== 1. The default experiment on one GPU"
start=$SECONDS
timeout 150 $PY train.py print_config=false resume=never hydra.run.dir=outputs/gpu_check_train 2>&1 \
  | tee "$OUT/train.log" | tail -25
echo "wall $((SECONDS - start)) s (python train.py, data generation included)" | tee -a "$OUT/train.log"

echo "== 2. GPU tests"
timeout 90 $PY -m pytest tests/gpu -q -p no:cacheprovider 2>&1 | tee "$OUT/gpu_tests.log" | tail -5

echo "== 3. GPU benchmark"
timeout "${BENCH_TIMEOUT:-240}" $PY scripts/bench/benchmark.py --parts gpu --repeats 3 \
  --out "$OUT/benchmark.json" 2>&1 | tee "$OUT/benchmark.log"
