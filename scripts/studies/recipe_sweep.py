"""Learning curves of candidate from-scratch recipes for the default experiment, run side by side.

Each recipe is `python train.py` with a few overrides (below); the table gives validation
accuracy per epoch and test accuracy, and `--out` the JSON. It chose the default backbone
(README, "Why resnet10t"). On one GPU several runs share the device; on a CPU use --parallel 1.

    python scripts/studies/recipe_sweep.py --parallel 8                  # every recipe
    python scripts/studies/recipe_sweep.py r10t r18_base --parallel 1    # some of them
    python scripts/studies/recipe_sweep.py r10t -- data.generator.seed=1 # after --: for every run
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Every recipe: full precision (comparable across devices), all epochs (no early stop), and none
# of the explanation callbacks (they cost time and change no weight).
COMMON = [
    "trainer.precision=32-true",
    "callbacks.early_stopping=null",
    "callbacks.explain_images=null",
    "callbacks.worst_mistakes=null",
    "callbacks.embedding_projector=null",
    "callbacks.weight_histograms=null",
    "callbacks.sample_images=null",
    "callbacks.rich_progress_bar=null",
    "logger=csv",
    "print_config=false",
    "data.validate=off",
    "report=false",
    "history.path=null",
    "resume=never",  # a recipe trains afresh, whatever its folder holds from an earlier sweep
]
R10T, R18, RX2, RX4 = (
    "model.backbone=resnet10t",
    "model.backbone=resnet18",
    "model.backbone=regnetx_002",
    "model.backbone=regnetx_004",
)
RECIPES: dict[str, list[str]] = {
    "r10t": [R10T],
    "r10t_128": [R10T, "model.input_size=128"],
    "r10t_lr6e-3": [R10T, "model.optimizer.lr=6e-3"],
    "r14t": ["model.backbone=resnet14t"],
    "r18_base": [R18],
    "r18_128": [R18, "model.input_size=128"],
    "r18_avg": [R18, "model.model_kwargs.global_pool=avg"],
    "r18_lr1e-3": [R18, "model.optimizer.lr=1e-3"],
    "r18_wd0": [R18, "model.optimizer.weight_decay=0"],
    "r18_bs16": [R18, "data.batch_size=16", "model.optimizer.lr=2e-3"],
    "r18_bs64": [R18, "data.batch_size=64"],
    "rx002": [RX2],
    "rx002_128": [RX2, "model.input_size=128"],
    "rx002_128_bs16": [RX2, "model.input_size=128", "data.batch_size=16"],
    "rx002_lr6e-3": [RX2, "model.optimizer.lr=6e-3"],
    "rx004": [RX4],
    "rx004_128": [RX4, "model.input_size=128"],
    "ry004": ["model.backbone=regnety_004"],
    "effb0": ["model.backbone=efficientnet_b0"],
    "mnv3l": ["model.backbone=mobilenetv3_large_100"],
    "mnv4s": ["model.backbone=mobilenetv4_conv_small"],
    "mnv4s_128": ["model.backbone=mobilenetv4_conv_small", "model.input_size=128"],
    "lcnet": ["model.backbone=lcnet_100"],
    "lcnet_128": ["model.backbone=lcnet_100", "model.input_size=128"],
}


def curve(run_dir: Path) -> dict:
    """Validation accuracy per epoch and the test figures, from the run's CSV log."""
    path = run_dir / "csv" / "metrics.csv"
    if not path.exists():
        return {}
    val, test = {}, None
    with path.open() as f:
        for row in csv.DictReader(f):
            if row.get("val/acc"):
                val[int(row["epoch"])] = round(float(row["val/acc"]), 4)
            if row.get("test/acc"):
                test = {k: round(float(row[k]), 4) for k in ("test/acc", "test/f1") if row.get(k)}
    return {"val_acc": [val[k] for k in sorted(val)], "test": test}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("recipes", nargs="*", help=f"names (default: all): {', '.join(RECIPES)}")
    p.add_argument("--parallel", type=int, default=1, help="runs at a time")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--budget", type=float, default=3600, help="seconds; runs left are stopped")
    p.add_argument("--out", type=Path, default=ROOT / "outputs" / "sweep" / "sweep.json")
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args, extra = p.parse_args(argv[:cut]), argv[cut + 1 :]  # after --: overrides of every run
    unknown = [n for n in args.recipes if n not in RECIPES]
    if unknown or args.parallel < 1:
        p.error(f"unknown recipes {unknown}" if unknown else "--parallel must be 1 or more")
    names = args.recipes or list(RECIPES)
    root = args.out.parent
    root.mkdir(parents=True, exist_ok=True)
    threads = str(max(1, (os.cpu_count() or 1) // args.parallel))
    env = dict(os.environ, OMP_NUM_THREADS=threads)
    start, pending, running, results = time.time(), list(names), {}, {}
    while (pending or running) and time.time() - start < args.budget:
        while pending and len(running) < args.parallel:
            name = pending.pop(0)
            run_dir = root / name
            cmd = [sys.executable, "train.py", *COMMON, f"trainer.max_epochs={args.epochs}"]
            cmd += [*RECIPES[name], *extra, f"hydra.run.dir={run_dir}"]
            with (root / f"{name}.log").open("w") as log:  # the child keeps its own handle
                proc = subprocess.Popen(
                    cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env
                )
            running[name] = (proc, time.time(), run_dir)
        time.sleep(1)
        for name, (proc, t0, run_dir) in list(running.items()):
            if proc.poll() is None:
                continue
            del running[name]
            results[name] = {"rc": proc.returncode, "seconds": round(time.time() - t0, 1)}
            results[name].update(curve(run_dir))
            print(name, json.dumps(results[name]), flush=True)
            args.out.write_text(json.dumps(results, indent=1))
    for name, (proc, _, run_dir) in running.items():  # over budget
        proc.kill()
        proc.wait()
        results[name] = {"rc": "stopped at the budget", **curve(run_dir)}
    for name in pending:
        results[name] = {"rc": "not started: over the budget"}
    args.out.write_text(json.dumps(results, indent=1))
    print(f"\n{'recipe':16s} {'first epoch >= 0.95':>20s} {'val acc, last':>14s} {'test acc':>9s}")
    for name, r in results.items():
        val = r.get("val_acc") or []
        first = next((i + 1 for i, a in enumerate(val) if a >= 0.95), "-")
        test = (r.get("test") or {}).get("test/acc", "-")
        print(f"{name:16s} {first!s:>20s} {val[-1] if val else '-'!s:>14s} {test!s:>9s}")


if __name__ == "__main__":
    main()
