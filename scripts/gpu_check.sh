#!/usr/bin/env bash
# Everything that needs a GPU, in one go (about 5 minutes on one H100 once installed):
#   1. the GPU tests (tests/gpu, skipped on machines without CUDA),
#   2. the GPU benchmark (ResNet-50, 224 px, synthetic data: fp32/bf16, channels_last, compile,
#      and our Trainer path against a raw loop),
#   3. a short real training run of the default experiment on one GPU.
# Results go to ${OUT:-outputs/gpu_check}: gpu_tests.log, benchmark.json, train.log.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-outputs/gpu_check}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1
make install >/dev/null
PY=.venv/bin/python
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"

echo "== 1. GPU tests"
timeout 300 $PY -m pytest tests/gpu -q -p no:cacheprovider 2>&1 | tee "$OUT/gpu_tests.log"

echo "== 2. GPU benchmark"
timeout 600 $PY scripts/benchmark.py --parts gpu --repeats 3 --out "$OUT/benchmark.json" 2>&1 \
  | tee "$OUT/benchmark.log"

echo "== 3. Short real training run (default experiment, one GPU, 224 px)"
timeout 300 $PY train.py trainer=gpu model.input_size=224 trainer.max_epochs=5 data.batch_size=128 \
  data.generator.num_train=4000 "hydra.run.dir=$OUT/train_run" print_config=false 2>&1 \
  | tee "$OUT/train.log" | tail -25
