"""Why accuracy misleads on an imbalanced line: "always good" next to a trained model.

Generates (once) a board set with 95% good boards, scores a model that always says "good" on
its test split with the same metric code as eval.py (trainer/metrics/summary.py), and, unless
``--no-train``, trains a small model with train.py and reads its report (metrics.json).

Example (the README's figure):
    python scripts/studies/imbalance_baseline.py --model resnet10t --epochs 8
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

COLUMNS = {
    "accuracy": "test/acc",
    "balanced acc.": "test/balanced_acc",
    "macro F1": "test/f1",
    "pass/fail AUROC": "test/auroc_pass_fail",
    "defect recall @ op": "test/defect_recall_at_op",
    "false alarms @ op": "test/false_alarm_rate_at_op",
}


def generator_overrides(args: argparse.Namespace) -> list[str]:
    return [
        f"data.generator.good_fraction={args.good_fraction}",
        f"data.generator.image_size={args.image_size}",
        f"data.generator.num_train={args.num_train}",
        f"data.generator.num_val={args.num_val}",
        f"data.generator.num_test={args.num_test}",
    ]


def always_good(args: argparse.Namespace) -> tuple[dict[str, float], dict[str, int]]:
    """Metrics of "always good" on the real test split (the set is generated if missing)."""
    from trainer.data.datamodule import PCBDataModule
    from trainer.metrics.summary import always_class_logits, compute_metrics

    spec = {
        "good_fraction": args.good_fraction,
        "image_size": args.image_size,
        "num_train": args.num_train,
        "num_val": args.num_val,
        "num_test": args.num_test,
    }
    dm = PCBDataModule(generator=spec, root=ROOT / "data" / "pcb")
    dm.prepare_data()
    import torch

    target = torch.tensor([s.label for s in dm.scan.splits["test"]])
    good = dm.class_names.index("good")
    logits = always_class_logits(len(target), len(dm.class_names), good)
    metrics = compute_metrics(logits, target, dm.class_names, "good", "test").scalars
    metrics["test/defect_recall_at_op"] = 0.0  # it never flags a board
    metrics["test/false_alarm_rate_at_op"] = 0.0
    return metrics, dm.scan.counts()["test"]


def train_model(args: argparse.Namespace, run_dir: Path) -> dict[str, float]:
    cmd = [
        sys.executable,
        "train.py",
        *generator_overrides(args),
        f"model.backbone={args.model}",
        "model.pretrained=false",
        f"model.input_size={args.image_size}",
        f"trainer.max_epochs={args.epochs}",
        "trainer.accelerator=cpu",
        "callbacks.early_stopping=null",
        "callbacks.rich_progress_bar=null",
        "print_config=false",
        "tags=[imbalance_benchmark]",
        "resume=never",  # a benchmark trains afresh, whatever the folder holds
        f"hydra.run.dir={run_dir}",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    subprocess.run(cmd, cwd=ROOT, env=env, check=True)
    return json.loads((run_dir / "metrics.json").read_text())["metrics"]


def eval_checkpoint(ckpt: Path, run_dir: Path) -> dict[str, float]:
    """``python eval.py ckpt_path=CKPT``: its test split, the operating point chosen on val."""
    cmd = [sys.executable, "eval.py", f"ckpt_path={ckpt}", f"hydra.run.dir={run_dir}"]
    subprocess.run(cmd, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, check=True)
    return json.loads((run_dir / "metrics.json").read_text())["metrics"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--good-fraction", type=float, default=0.95)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--num-train", type=int, default=1200)
    p.add_argument("--num-val", type=int, default=400)
    p.add_argument("--num-test", type=int, default=400)
    p.add_argument("--model", default="resnet18", help="any timm backbone (test_resnet: tiny)")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--no-train", action="store_true", help="only the always-good baseline")
    p.add_argument("--eval-ckpt", type=Path, help="evaluate this checkpoint instead of training")
    p.add_argument("--out", type=Path, default=ROOT / "outputs" / "benchmarks" / "imbalance")
    args = p.parse_args()

    baseline, counts = always_good(args)
    rows = {'always "good"': baseline}
    if args.eval_ckpt:
        rows[f"{args.eval_ckpt.name} (eval.py)"] = eval_checkpoint(
            args.eval_ckpt, args.out / "eval"
        )
    elif not args.no_train:
        start = time.perf_counter()
        rows[f"{args.model}, {args.epochs} epochs"] = train_model(args, args.out / "train")
        print(f"training + report took {time.perf_counter() - start:.0f} s")
    print(f"\ntest split: {counts}")
    print("| model | " + " | ".join(COLUMNS) + " |")
    print("|---|" + "---:|" * len(COLUMNS))
    for name, m in rows.items():
        print(
            f"| {name} | "
            + " | ".join(f"{m.get(k, float('nan')):.3f}" for k in COLUMNS.values())
            + " |"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps({"counts": counts, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
