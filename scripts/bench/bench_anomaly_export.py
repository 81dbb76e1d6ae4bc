"""Latency of an exported anomaly model (PatchCore) per board, one CPU thread, by memory bank size.

Examples:
    python scripts/bench/bench_anomaly_export.py                     # banks 11520 and 2304
    python scripts/bench/bench_anomaly_export.py --bank 11520 --runs 200 --out bench.json

The issue's case: 800 good boards of 96 px give 800 x 144 patch features of 384 dimensions
(resnet10t, layers 2 and 3); coreset 0.1 keeps 11,520 of them, 0.02 keeps 2,304. A bank's size,
not its values, sets the cost (one matmul against it per board), so the model here has random
weights and a random bank of each size: no training needed. Each bank's PatchCore is exported as
the bundle exports it (``trainer.export.onnx_export``) and timed at batch 1, uint8 input: ONNX
Runtime with the bundle's session options (one intra-op thread), the score alone and score with
map, and PyTorch eager (``torch.set_num_threads(1)``); the median of ``--runs``, after warm-up.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

try:
    import trainer  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def median_ms(fn: Callable[[], object], runs: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def measure(backbone: str, side: int, bank: int, runs: int, work: Path) -> dict[str, object]:
    import numpy as np
    import onnxruntime as ort
    import torch

    from trainer.export.onnx_export import deployable, export_onnx
    from trainer.export.runtime.score import session_options
    from trainer.models.patchcore import PatchCore

    torch.manual_seed(0)
    model = PatchCore(backbone, ["defect", "good"], pretrained=False, input_size=side).eval()
    model.set_bank(torch.randn(bank, model.feature_dim))
    path = work / f"bank_{bank}.onnx"
    export_onnx(deployable(model), [side, side], path)
    session = ort.InferenceSession(
        str(path), session_options(1), providers=["CPUExecutionProvider"]
    )
    board = np.random.default_rng(0).integers(0, 256, (1, 3, side, side), dtype=np.uint8)
    module, tensor = deployable(model), torch.from_numpy(board)
    torch.set_num_threads(1)
    with torch.no_grad():
        eager = median_ms(lambda: module(tensor), runs)
    return {
        "bank": [bank, model.feature_dim],
        "bank_mb": round(bank * model.feature_dim * 4 / 1e6, 1),
        "onnx_mb": round(path.stat().st_size / 1e6, 1),
        "onnxruntime_score_ms": round(
            median_ms(lambda: session.run(["anomaly_score"], {"image": board}), runs), 2
        ),
        "onnxruntime_score_and_map_ms": round(
            median_ms(lambda: session.run(None, {"image": board}), runs), 2
        ),
        "pytorch_eager_ms": round(eager, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet10t")
    parser.add_argument("--side", type=int, default=96, help="board side in pixels")
    parser.add_argument("--bank", type=int, nargs="+", default=[11520, 2304])
    parser.add_argument("--runs", type=int, default=50, help="timed runs per figure")
    parser.add_argument("--out", type=Path, help="also write the figures here (JSON)")
    args = parser.parse_args()
    import onnxruntime
    import torch

    with tempfile.TemporaryDirectory() as work:
        rows = [measure(args.backbone, args.side, b, args.runs, Path(work)) for b in args.bank]
    result = {
        "backbone": args.backbone,
        "side": args.side,
        "runs": args.runs,
        "threads": 1,
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
        "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
        "results": rows,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
