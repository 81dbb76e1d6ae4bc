"""`python train.py data=folder data.root=X`, nothing else, against a careful hand-written loop.

Real images that ship inside scikit-image (no download): ``lfw`` (``skimage.data.lfw_subset()``:
100 face and 100 non-face crops of 25 px) and ``textures`` (brick, grass and gravel photographs
cut into 64 px tiles, 64 a class); and ``digits``, the one set big enough for the per-epoch work
to outweigh the fixed costs: scikit-learn's ``load_digits()`` (1,797 scanned handwritten digits of
8 x 8 px, 10 classes, about 180 each). Each set is written once as ``<out>/<set>/{train,val,test}/
<class>/*.png`` (70/15/15 per class, seeded), so that both sides train, validate and test on the
same files.

The loop (``--raw``, its own process, timed whole like ours): timm's model of the same backbone
from random weights (no weights reach this machine; ours warns and does the same), the input size
ours chose (read from its checkpoint), the same epochs and batch, AdamW at 1e-3 with a one-cycle
schedule, no augmentation; it tests the weights of its last epoch. Ours tests its best checkpoint.

    python scripts/bench/bench_folder.py                  # the three sets, about 6 minutes on 2 cores
    python scripts/bench/bench_folder.py --sets lfw --repeats 3
    python scripts/bench/bench_folder.py --sets digits --input-size 64 --repeats 2   # longer runs
``--input-size N`` gives ours ``model.input_size=N`` (and so the loop too): not the bar's "nothing
else", but a probe of where the ratio goes when training, not start-up, takes the time.
Writes ``<out>/folder.json``: {"rows": [{"set", "ours_test_acc", "raw_test_acc", "ours_seconds",
"raw_seconds", "input_size", "epochs", "pairs_seconds"}]}: the medians of the
pairs, and each pair's [ours, loop] seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SPLIT = (0.7, 0.15)  # train, val; the rest is test


def _write_split(out: Path, images: dict[str, list], seed: int = 0) -> Path:
    import numpy as np
    from PIL import Image

    if (out / "done").is_file():
        return out
    rng = np.random.default_rng(seed)
    for name, items in images.items():
        order = rng.permutation(len(items))
        n_train, n_val = round(SPLIT[0] * len(items)), round(SPLIT[1] * len(items))
        for rank, index in enumerate(order):
            split = "train" if rank < n_train else "val" if rank < n_train + n_val else "test"
            folder = out / split / name
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(items[index]).save(folder / f"{index:04d}.png")
    (out / "done").write_text("")
    return out


def make_set(name: str, out: Path) -> Path:
    """Write the named set of real images (once) and return its folder."""
    import numpy as np
    import skimage.data

    if name == "lfw":
        faces = (skimage.data.lfw_subset() * 255).round().astype(np.uint8)
        return _write_split(out / name, {"face": list(faces[:100]), "nonface": list(faces[100:])})
    if name == "textures":
        tiles = {}
        for texture in ("brick", "grass", "gravel"):
            image = getattr(skimage.data, texture)()
            tiles[texture] = [
                image[y : y + 64, x : x + 64] for y in range(0, 512, 64) for x in range(0, 512, 64)
            ]
        return _write_split(out / name, tiles)
    if name == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        scans = (digits.images * (255 / 16)).round().astype(np.uint8)  # 17 grey levels, 0-16
        return _write_split(
            out / name, {f"digit_{k}": list(scans[digits.target == k]) for k in range(10)}
        )
    raise SystemExit(f"--sets: unknown set '{name}' (lfw, textures, digits)")


def run_ours(
    root: Path, run_dir: Path, input_size: int | None = None
) -> tuple[float, float, int, int]:
    """The whole ``python train.py data=folder data.root=ROOT`` process: (test acc, seconds,
    input size, epochs trained)."""
    cmd = [
        sys.executable,
        "train.py",
        "data=folder",
        f"data.root={root}",
        f"hydra.run.dir={run_dir}",
        "history.path=null",  # a benchmark: the user's run history stays theirs
        *([f"model.input_size={input_size}"] if input_size is not None else []),
    ]
    start = time.perf_counter()
    log = run_dir.parent / f"{run_dir.name}.log"
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        done = subprocess.run(cmd, cwd=ROOT, env=_env(), stdout=out, stderr=subprocess.STDOUT)
    if done.returncode:
        raise SystemExit(f"python train.py failed (exit {done.returncode}) on {root}: see {log}")
    seconds = time.perf_counter() - start
    metrics = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    import torch

    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    size = int(ckpt["trainer_metadata"]["preprocessing"]["input_size"][-1])
    return metrics["test/acc"], seconds, size, int(ckpt["epoch"]) + 1


def run_raw(root: Path, backbone: str, size: int, epochs: int) -> tuple[float, float]:
    """This script's ``--raw`` loop in a process of its own: (test acc, seconds)."""
    cmd = [sys.executable, __file__, "--raw", str(root), backbone, str(size), str(epochs)]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"the loop failed (exit {done.returncode}) on {root}: {last}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["test_acc"]), seconds


def raw_loop(root: Path, backbone: str, size: int, epochs: int, batch: int = 32) -> float:
    """The hand-written loop a careful engineer writes: test accuracy of the last epoch."""
    import numpy as np
    import timm
    import torch
    import torch.nn.functional as F
    from PIL import Image

    torch.manual_seed(0)
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())

    def load(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        files = [
            (f, k) for k, c in enumerate(classes) for f in sorted((root / split / c).glob("*"))
        ]
        images = [
            np.asarray(Image.open(f).convert("RGB").resize((size, size), Image.BILINEAR))
            for f, _ in files
        ]
        x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
        return x, torch.tensor([k for _, k in files])

    model = timm.create_model(backbone, pretrained=False, num_classes=len(classes))
    cfg = timm.data.resolve_data_config({}, model=model)
    mean = torch.tensor(cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(cfg["std"]).view(1, 3, 1, 1)
    (x_train, y_train), (x_test, y_test) = load("train"), load("test")
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    steps = epochs * ((len(x_train) + batch - 1) // batch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-3, total_steps=steps)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x_train))
        for start in range(0, len(order), batch):
            index = order[start : start + batch]
            loss = F.cross_entropy(model(x_train[index]), y_train[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    model.eval()
    with torch.no_grad():
        predicted = torch.cat(
            [model(x_test[i : i + 256]).argmax(1) for i in range(0, len(x_test), 256)]
        )
    return float((predicted == y_test).float().mean())


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1"}


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--raw":
        root, backbone, size, epochs = (
            Path(sys.argv[2]),
            sys.argv[3],
            int(sys.argv[4]),
            int(sys.argv[5]),
        )
        print(json.dumps({"test_acc": raw_loop(root, backbone, size, epochs)}))
        return 0
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sets", nargs="+", default=["lfw", "textures", "digits"])
    p.add_argument("--repeats", type=int, default=1, help="pairs of runs; the median is kept")
    p.add_argument("--backbone", default="resnet10t", help="configs/model's default")
    p.add_argument(
        "--input-size", type=int, default=None, help="model.input_size for ours (default: auto)"
    )
    p.add_argument("--out", type=Path, default=ROOT / "outputs" / "benchmark")
    args = p.parse_args()
    if args.input_size is not None and args.input_size < 1:
        p.error(f"--input-size {args.input_size}: give a side in pixels >= 1, or leave it out")

    rows = []
    for name in args.sets:
        root = make_set(name, args.out / "folder_sets")
        pairs = []
        for repeat in range(args.repeats):
            ours_acc, ours_s, size, epochs = run_ours(
                root, args.out / "folder_runs" / f"{name}_{repeat}", args.input_size
            )
            raw_acc, raw_s = run_raw(root, args.backbone, size, epochs)
            pairs.append((ours_acc, raw_acc, ours_s, raw_s))
        ours_acc, raw_acc, ours_s, raw_s = (statistics.median(v) for v in zip(*pairs, strict=True))
        rows.append(
            {
                "set": name,
                "ours_test_acc": ours_acc,
                "raw_test_acc": raw_acc,
                "ours_seconds": round(ours_s, 1),
                "raw_seconds": round(raw_s, 1),
                "input_size": size,
                "epochs": epochs,
                "pairs_seconds": [[round(o, 1), round(r, 1)] for _, _, o, r in pairs],
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "folder.json").write_text(json.dumps({"rows": rows}, indent=2))
    print("\n| set | ours test acc | loop test acc | ours s | loop s | ours / loop |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['set']} | {r['ours_test_acc']:.3f} | {r['raw_test_acc']:.3f} | "
            f"{r['ours_seconds']:.0f} | {r['raw_seconds']:.0f} | "
            f"{r['ours_seconds'] / r['raw_seconds']:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
