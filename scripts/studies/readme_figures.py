"""Every CPU figure the README quotes, measured again: ``python scripts/studies/readme_figures.py``.

Runs the commands behind the README's figures one after another (nothing else should run on the
machine meanwhile), keeps each command's own output under ``--out`` and collects the figures into
``<out>/figures.json`` with the machine, the date and the package versions (a part run again
replaces its own entry and keeps the others).
A fresh clone reproduces the README by ``make install`` and this script. GPU figures need a GPU:
``bash scripts/bench/gpu_check.sh`` there.

    python scripts/studies/readme_figures.py                        # every part, 25 min on 2 cores
    python scripts/studies/readme_figures.py --parts train,explain  # some of them
    python scripts/studies/readme_figures.py --update-docs          # and the pictures in docs/

Parts (each the README section it feeds):
  train       "Measured": ``python train.py``, the default experiment (data generated first, timed)
  explain     "The pointing game" and the pictures: ``scripts/explain.py ... pointing_game=true``
  callbacks   "What the callbacks cost": ``scripts/bench/explain_overhead.py``
  speed       "Speed", CPU table: ``scripts/bench/benchmark.py --parts overhead,pipeline,tta``
  backbones   "Why resnet10t", images/s: ``scripts/bench/benchmark.py --parts overhead --backbone``
  imbalance   "Rare defects", the table: ``scripts/studies/imbalance_baseline.py``
  serve       "ONNX Runtime against PyTorch": ``scripts/bench/bench_serve.py --ckpt <the model>``
  validate    "Data contract", speed: ``scripts/bench/bench_validate.py``
  details     one-line claims: channels_last on the CPU, torchvision.io against Pillow decoding,
              Pillow's resize against training's, a 16-megapixel resize in score.py's numpy port
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PARTS = (
    "train",
    "explain",
    "callbacks",
    "speed",
    "backbones",
    "imbalance",
    "serve",
    "validate",
    "details",
)
BACKBONES = (  # the "Why resnet10t" table, with the input size each row was measured at
    ("resnet10t", 96),
    ("resnet14t", 96),
    ("resnet10t", 128),
    ("resnet18", 96),
    ("regnetx_002", 96),
    ("efficientnet_b0", 96),
    ("mobilenetv3_large_100", 96),
    ("mobilenetv4_conv_small", 96),
    ("lcnet_100", 96),
)
PACKAGES = ("torch", "torchvision", "lightning", "timm", "torchmetrics", "onnxruntime", "numpy")


def run(command: list[str], log: Path) -> float:
    """Run ``command`` from the repository root, its output into ``log``; wall seconds."""
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
    start = time.perf_counter()
    with open(log, "w") as out:
        done = subprocess.run(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"readme_figures: '{' '.join(command)}' failed ({done.returncode}); see {log}")
    return seconds


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


def generate_boards() -> dict[str, Any]:
    """Generate the default experiment's boards, unless they are there; how long it took."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate

    os.environ.setdefault("PROJECT_ROOT", str(ROOT))
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)  # the config's ${hydra:...} paths resolve
        datamodule = instantiate(cfg.data)
    cached = (datamodule.dataset_root / "metadata.json").is_file()
    start = time.perf_counter()
    datamodule.prepare_data()
    return {
        "root": str(datamodule.dataset_root),
        "cached": cached,
        "generation_seconds": None if cached else time.perf_counter() - start,
    }


def val_acc_by_epoch(run_dir: Path) -> list[float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return [round(e.value, 4) for e in events.Scalars("val/acc")]


def part_train(out: Path, _: dict[str, Any]) -> dict[str, Any]:
    boards = generate_boards()
    run_dir = out / "train" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    wall = run(python("train.py", f"hydra.run.dir={run_dir}"), out / "logs" / "train.log")
    report = json.loads((run_dir / "metrics.json").read_text())
    confusion = report["confusion_matrix"]["rows_true_columns_predicted"]
    wrong = sum(n for i, row in enumerate(confusion) for j, n in enumerate(row) if i != j)
    accs = val_acc_by_epoch(run_dir)
    return {
        **boards,
        "run_dir": str(run_dir),
        "best_checkpoint": report["checkpoint"],
        "wall_seconds": wall,
        "val_acc_by_epoch": accs,
        "first_epoch_val_acc_0.95": next((i + 1 for i, a in enumerate(accs) if a >= 0.95), None),
        "test_errors": wrong,
        "test_images": int(report["metrics"]["test/num_images"]),
        **{
            k: v
            for k, v in report["metrics"].items()
            if k.split("/")[1]
            in (
                "acc",
                "f1",
                "auroc",
                "auroc_pass_fail",
                "balanced_acc",
                "ece",
                "defect_recall_at_op",
                "false_alarm_rate_at_op",
            )
        },
    }


def best_checkpoint(figures: dict[str, Any]) -> str:
    if "train" not in figures:
        sys.exit("readme_figures: this part needs the default model: add the part 'train'")
    return figures["train"]["best_checkpoint"]


def part_explain(out: Path, figures: dict[str, Any]) -> dict[str, Any]:
    ckpt, result = best_checkpoint(figures), {}
    for layers in ("auto", "last"):
        folder = out / f"explain_{layers}"
        run(
            python(
                "scripts/explain.py",
                f"ckpt_path={ckpt}",
                "pointing_game=true",
                f"cam_layers={layers}",
                f"out_dir={folder}",
            ),
            out / "logs" / f"explain_{layers}.log",
        )
        game = json.loads((folder / "pointing_game.json").read_text())
        result[f"pointing_game_{layers}"] = game
    result["pictures"] = str(out / "explain_auto")
    return result


def part_callbacks(out: Path, figures: dict[str, Any]) -> dict[str, Any]:
    log = out / "logs" / "explain_overhead.log"
    run(python("scripts/bench/explain_overhead.py", "--ckpt", best_checkpoint(figures)), log)
    lines = [line.strip() for line in log.read_text().splitlines()]
    keep = ("validation of", "added to a", "ExplainImages", "WorstMistakes", "EmbeddingProjector")
    return {"report": [line for line in lines if line.startswith(keep)]}


def part_speed(out: Path, _: dict[str, Any]) -> dict[str, Any]:
    path = out / "benchmark.json"
    run(
        python(
            "scripts/bench/benchmark.py", "--parts", "overhead,pipeline,tta", "--out", str(path)
        ),
        out / "logs" / "benchmark.log",
    )
    return json.loads(path.read_text())


def part_backbones(out: Path, _: dict[str, Any]) -> dict[str, Any]:
    result = {}
    for name, size in BACKBONES:
        path = out / "backbones" / f"{name}_{size}.json"
        run(
            python(
                "scripts/bench/benchmark.py",
                "--parts",
                "overhead",
                "--backbone",
                name,
                "--input-size",
                str(size),
                "--repeats",
                "1",
                "--out",
                str(path),
            ),
            out / "logs" / f"backbone_{name}_{size}.log",
        )
        result[f"{name} {size} px raw images/s"] = json.loads(path.read_text())["overhead"][
            "raw_median"
        ]
    return result


def part_imbalance(out: Path, _: dict[str, Any]) -> dict[str, Any]:
    folder = out / "imbalance"
    wall = run(
        python("scripts/studies/imbalance_baseline.py", "--out", str(folder)),
        out / "logs" / "imbalance.log",
    )
    return {"wall_seconds": wall, **json.loads((folder / "table.json").read_text())}


def part_serve(out: Path, figures: dict[str, Any]) -> dict[str, Any]:
    path = out / "serve.json"
    run(
        python(
            "scripts/bench/bench_serve.py", "--ckpt", best_checkpoint(figures), "--out", str(path)
        ),
        out / "logs" / "bench_serve.log",
    )
    return json.loads(path.read_text())


def part_validate(out: Path, _: dict[str, Any]) -> dict[str, Any]:
    path = out / "validate.json"
    run(
        python("scripts/bench/bench_validate.py", "--json", str(path)),
        out / "logs" / "validate.log",
    )
    return json.loads(path.read_text())


def _steps_per_s(name: str, channels_last: bool, steps: int = 20, warmup: int = 5) -> float:
    """Training steps per second of timm ``name`` at 96 px, batch 32, AdamW, on the CPU."""
    import timm
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    net = timm.create_model(name, num_classes=4)
    x, y = torch.randn(32, 3, 96, 96), torch.randint(0, 4, (32,))
    if channels_last:
        net, x = (
            net.to(memory_format=torch.channels_last),
            x.contiguous(memory_format=torch.channels_last),
        )
    optimizer = torch.optim.AdamW(net.parameters())
    for i in range(warmup + steps):
        if i == warmup:
            start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()
        optimizer.step()
    return steps / (time.perf_counter() - start)


def part_details(out: Path, figures: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    import torch
    from PIL import Image
    from torchvision.transforms import functional as TF

    from trainer.data.dataset import _decode_fast, _decode_pil
    from trainer.export.runtime.score import resize_uint8

    result: dict[str, Any] = {"channels_last_speedup": {}}
    for name in ("resnet10t", "resnet18", "efficientnet_b0", "mobilenetv3_large_100"):
        plain, last = _steps_per_s(name, False), _steps_per_s(name, True)
        result["channels_last_speedup"][name] = round(last / plain, 3)
    boards = sorted(Path(figures.get("train", {}).get("root", ROOT / "data")).rglob("*.png"))[:500]
    for label, decode in (("torchvision.io", _decode_fast), ("Pillow", _decode_pil)):
        start = time.perf_counter()
        for path in boards:
            decode(path)
        result[f"decode_{label}_images_per_s"] = len(boards) / (time.perf_counter() - start)
    result["decode_images"] = len(boards)
    rng = np.random.default_rng(0)
    for (h, w), side in (
        ((128, 128), 96),
        ((128, 128), 64),
        ((64, 64), 96),
        ((480, 640), 96),
        ((1000, 700), 224),
    ):
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)  # noise: every weight counts
        ours = TF.resize(torch.from_numpy(image).permute(2, 0, 1), [side, side], antialias=True)
        pillow = np.asarray(Image.fromarray(image).resize((side, side), Image.BILINEAR))
        differ = np.abs(ours.permute(1, 2, 0).numpy().astype(int) - pillow.astype(int))
        result[f"pillow_resize_{w}x{h}_to_{side}"] = {
            "share_differing": float((differ > 0).mean()),
            "max_grey_levels": int(differ.max()),
        }
    big = rng.integers(0, 256, (4096, 4096, 3), dtype=np.uint8)
    start = time.perf_counter()
    resize_uint8(big, (224, 224), "bilinear")
    result["numpy_resize_16mp_to_224_seconds"] = time.perf_counter() - start
    return result


def machine() -> dict[str, Any]:
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    model = (
        next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor(),
        )
        if Path("/proc/cpuinfo").is_file()
        else platform.processor()
    )
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return {
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "commit": commit or None,
        "packages": versions,
    }


def update_docs(figures: dict[str, Any]) -> None:
    """The README's pictures, from this run's default model."""
    docs = ROOT / "docs"
    if "train" in figures:
        source = Path(figures["train"]["run_dir"]) / "figures" / "confusion_matrix.png"
        shutil.copyfile(source, docs / "default_confusion_matrix.png")
    if "explain" in figures:
        folder = Path(figures["explain"]["pictures"])
        shutil.copyfile(folder / "gradcam.png", docs / "explain_gradcam.png")
        boards = sorted(folder.glob("[0-9][0-9]_*.png"))  # NN_<file stem>.png
        root = Path(figures["train"]["root"]) if "train" in figures else None

        def misplaced(board: Path) -> bool:  # the board's class is its folder in the data
            stem = board.stem.split("_", 1)[1]
            return bool(root and list(root.glob(f"test/misplaced_component/{stem}.*")))

        shutil.copyfile(next(filter(misplaced, boards), boards[0]), docs / "explain_board.png")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--parts", default=",".join(PARTS), help="comma-separated: " + ", ".join(PARTS))
    p.add_argument("--out", type=Path, default=ROOT / "outputs" / "readme_figures")
    p.add_argument("--update-docs", action="store_true", help="copy the pictures into docs/")
    args = p.parse_args()
    parts = [x for x in args.parts.split(",") if x]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        p.error(f"--parts: unknown {unknown}; choose from {', '.join(PARTS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    saved = args.out / "figures.json"  # parts run before are kept: rerun one, keep the rest
    figures: dict[str, Any] = json.loads(saved.read_text()) if saved.is_file() else {}
    figures["machine"] = machine()
    for part in PARTS:  # in this order: the later parts use the default model of 'train'
        if part in parts:
            print(f"readme_figures: {part} ...", flush=True)
            start = time.perf_counter()
            figures[part] = globals()[f"part_{part}"](args.out, figures)
            figures[part]["part_seconds"] = round(time.perf_counter() - start, 1)
            saved.write_text(json.dumps(figures, indent=2, default=str))
    if args.update_docs:
        update_docs(figures)
    print(json.dumps(figures, indent=2, default=str))
    print(f"readme_figures: {saved}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
