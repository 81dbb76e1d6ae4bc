"""Good boards only, measured: PatchCore on product A with backbones that never saw A's defects.

For each backbone (random weights, and each ``--backbone LABEL=PATH``: a classifier of another
product, e.g. ``python train.py data.generator.product=b``, a self-supervised one, any weights
file timm loads), ``python train.py experiment=pcb_anomaly`` fits on product A's 800 good training boards
and scores its whole test split; then ``scripts/explain.py pointing_game=true`` plays the pointing
game of the anomaly map on the generator's defect boxes, ``scripts/export.py`` writes the bundle
(parity-gated), and the latency of one board is measured on one CPU thread in PyTorch (the
checkpoint) and in ONNX Runtime (the bundle's ``model.onnx`` with the bundle's session options).

Writes ``<out>/anomaly.json``: per row the image AUROC (good against any defect) and per defect
kind, the pointing game, the whole command's wall seconds and peak memory, the fit's extraction
and coreset seconds, the memory bank's size, and the latencies.

    python scripts/studies/anomaly_benchmark.py --backbone "product b=<product-b run>/checkpoints/epoch_007.ckpt"
    python scripts/studies/anomaly_benchmark.py --no-random --backbone "b=..." --overrides model.position_weight=0
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from scripts.bench.bench_anomaly_export import median_ms  # noqa: E402
from scripts.studies.transfer_benchmark import QUIET  # noqa: E402

# run a command and print its peak resident memory (the child's, not this script's)
PEAK = (
    "import resource, subprocess, sys; rc = subprocess.run(sys.argv[1:]).returncode; "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(rc)"
)


def run(cmd: list[str], log_path: Path) -> tuple[float, float]:
    """Run ``python CMD`` in the repository: its wall seconds and peak memory in GB (stdout to
    ``log_path``; stderr, where logging goes, is printed when it fails)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log_path, "w") as log:
        done = subprocess.run(
            [sys.executable, "-c", PEAK, sys.executable, *cmd],
            cwd=ROOT,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
            stdout=log,
            stderr=subprocess.PIPE,
            text=True,
        )
    seconds = time.perf_counter() - start
    *rest, peak = done.stderr.strip().splitlines() or ["0"]
    if done.returncode:
        print("\n".join(rest[-20:]), file=sys.stderr)
        raise SystemExit(f"{' '.join(cmd[:3])} failed (exit {done.returncode}): see {log_path}")
    return seconds, int(peak) / 1e6  # ru_maxrss is in kB on Linux


def latency(ckpt: Path, bundle: Path, runs: int) -> dict[str, float]:
    """One board, batch 1, one thread: the checkpoint in PyTorch, the bundle in ONNX Runtime."""
    import numpy as np
    import onnxruntime as ort
    import torch

    from trainer.checkpoint import load_model
    from trainer.export.runtime.score import session_options

    torch.set_num_threads(1)
    model = load_model(ckpt).eval()
    side = int(model.preprocessing["input_size"][-1])
    board = np.random.default_rng(0).integers(0, 256, (1, 3, side, side), dtype=np.uint8)
    x = model.normalize(torch.from_numpy(board))
    with torch.no_grad():
        torch_ms = round(median_ms(lambda: model(x), runs), 2)
    session = ort.InferenceSession(
        str(bundle / "model.onnx"), session_options(1), providers=["CPUExecutionProvider"]
    )
    return {
        "pytorch_ms": torch_ms,
        "onnxruntime_ms": round(median_ms(lambda: session.run(None, {"image": board}), runs), 2),
        "onnxruntime_score_only_ms": round(
            median_ms(lambda: session.run(["anomaly_score"], {"image": board}), runs), 2
        ),
    }


def measure(label: str, overrides: list[str], out: Path, runs: int) -> dict:
    name = "".join(c if c.isalnum() else "_" for c in label)
    run_dir = out / "anomaly_runs" / name
    train_s, train_gb = run(
        [
            "train.py",
            *QUIET,
            "experiment=pcb_anomaly",
            *overrides,
            f"hydra.run.dir={run_dir}",
        ],
        out / "anomaly_runs" / f"{name}.log",
    )
    metrics = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    ckpt = sorted((run_dir / "checkpoints").glob("epoch_*.ckpt"))[-1]
    explain_dir = out / "anomaly_runs" / f"{name}_explain"
    run(
        [
            "scripts/explain.py",
            f"ckpt_path={ckpt}",
            "pointing_game=true",
            f"hydra.run.dir={explain_dir}",
        ],
        out / "anomaly_runs" / f"{name}_explain.log",
    )
    game = json.loads((explain_dir / "pointing_game.json").read_text())
    export_dir = out / "anomaly_runs" / f"{name}_bundle"
    run(
        ["scripts/export.py", f"ckpt_path={ckpt}", f"out={export_dir}"],
        out / "anomaly_runs" / f"{name}_export.log",
    )
    import torch

    meta = torch.load(ckpt, map_location="cpu", weights_only=False)["trainer_metadata"]
    kinds = {k.split("auroc_", 1)[1]: v for k, v in metrics.items() if "test/auroc_" in k}
    kinds.pop("pass_fail", None)
    return {
        "backbone": label,
        "overrides": overrides,
        "test_auroc": metrics["test/auroc_pass_fail"],
        "test_auroc_per_kind": kinds,
        "pointing_game": game.get("score"),
        "pointing_game_hits": [game.get("hits"), game.get("counted")],
        "wall_seconds": round(train_s, 1),
        "peak_memory_gb": round(train_gb, 2),
        "fit_seconds": meta["anomaly"].get("fit_seconds"),
        "bank_size": [meta["anomaly"]["bank_size"], meta["anomaly"]["feature_dim"]],
        "input_size": meta["preprocessing"]["input_size"][-1],
        **latency(ckpt, export_dir, runs),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--backbone",
        action="append",
        default=[],
        metavar="LABEL=PATH",
        help="a checkpoint of ours or weights file timm loads, and the row's label (repeatable)",
    )
    p.add_argument("--no-random", action="store_true", help="skip the random-weights row")
    p.add_argument("--overrides", nargs="*", default=[], help="extra train.py overrides, every row")
    p.add_argument("--runs", type=int, default=100, help="timed runs per latency figure")
    p.add_argument("--out", type=Path, default=ROOT / "outputs" / "benchmark")
    args = p.parse_args()

    backbones = {} if args.no_random else {"random weights": ["model.pretrained=false"]}
    for item in args.backbone:
        label, sep, path = item.partition("=")
        if not sep or not Path(path).is_file():
            p.error(f"--backbone {item!r}: give LABEL=PATH of an existing file")
        backbones[label] = [f"model.pretrained_path={Path(path).resolve()}"]
    if not backbones:
        p.error("nothing to measure: give --backbone LABEL=PATH, or drop --no-random")
    rows = []
    for name, overrides in backbones.items():
        rows.append(measure(name, [*overrides, *args.overrides], args.out, args.runs))
        print(json.dumps(rows[-1]), flush=True)

    import onnxruntime
    import timm
    import torch

    result = {
        "rows": rows,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "date": time.strftime("%Y-%m-%d"),
        "versions": {
            "torch": torch.__version__,
            "timm": timm.__version__,
            "onnxruntime": onnxruntime.__version__,
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "anomaly.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out / 'anomaly.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
