"""Speed of the framework against a minimal raw PyTorch loop, measured in the same process.

    python scripts/bench/benchmark.py                  # parts: overhead, pipeline, tta (and gpu)
    python scripts/bench/benchmark.py --parts overhead --repeats 3 --steps 20   # a quick look
    python scripts/bench/benchmark.py --parts gpu      # ResNet-50, 224 px, synthetic data, GPU

Parts:
  overhead  the same backbone, in-memory data, optimizer, schedule and precision trained for the
            same number of steps by a raw loop and by our Trainer path, alternating; images/s of
            each (steady state: the first ``--warmup`` steps are not timed) and the ratio.
  pipeline  images/s the training data loader delivers (decoded, augmented) against what the
            model consumes (from ``overhead``).
  tta       time to accuracy: wall time of ``python train.py`` until val/acc >= --target.
  gpu       ResNet-50 at 224 px on synthetic data in GPU memory: fp32 / bf16, channels_last or
            not, eager or compiled; and our Trainer path against the raw loop at bf16 +
            channels_last.
Writes a JSON file (``--out``) and prints a table.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PROJECT_ROOT", str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import lightning as L  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

console = Console()


class StepTimer(L.Callback):
    """Times the steps after ``warmup`` inside Trainer.fit, up to the end of training (so the
    epoch-end work, e.g. computing the epoch's metrics, is counted); ``steps_end`` marks the
    last step's end, to tell that epoch-end work apart. Set-up and teardown are not included."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.start = 0.0
        self.steps_end = 0.0
        self.end = 0.0

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step == self.warmup:
            self._sync(trainer)
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step == trainer.max_steps:  # the last step: one sync, not one per step
            self._sync(trainer)
            self.steps_end = time.perf_counter()

    def on_train_end(self, trainer: L.Trainer, *args: Any) -> None:
        self._sync(trainer)
        self.end = time.perf_counter()

    @staticmethod
    def _sync(trainer: L.Trainer) -> None:
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize()


def compose(overrides: list[str]):  # noqa: ANN201 - DictConfig
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = hydra_compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(ROOT / "outputs" / "benchmark" / "scratch")
        del cfg["hydra"]
    return cfg


def build(cfg, steps: int):  # noqa: ANN201 - (model, datamodule)
    """Our real objects from the config: the data module (in memory) and the LightningModule."""
    import hydra

    dm = hydra.utils.instantiate(cfg.data)
    dm.prepare_data()
    model = hydra.utils.instantiate(cfg.model, class_names=dm.class_names)
    dm.set_preprocessing(model.preprocessing)
    dm.setup("fit")
    return model, dm


def raw_loop(model, batches: Callable[[], Iterator], steps: int, warmup: int, device: str) -> float:
    """The minimal loop a person would write: same network, optimizer groups, schedule, loss."""
    model.to(device)
    net, mean, std = model.net, model.mean, model.std
    fused = {"fused": True} if device == "cuda" else {}
    opt = model.optimizer_factory(
        [{"params": list(model.head.parameters())}, {"params": model.backbone_parameters()}],
        **fused,
    )
    sched = model.scheduler_factory(opt, total_steps=steps)
    channels_last = model.use_channels_last  # the memory format ours would use on this device
    if channels_last:
        net.to(memory_format=torch.channels_last)
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda")
    net.train()
    start = 0.0
    it = batches()
    for step in range(steps):
        if step == warmup:
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        images, target = next(it)
        images = images.to(device, non_blocking=True)
        target = target.to(device, non_blocking=True)
        x = (images.float() - mean) / std
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast:
            loss = F.cross_entropy(net(x), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def ours(
    model, loader, steps: int, warmup: int, accelerator: str, precision: str
) -> tuple[float, float]:
    """Our LightningModule under Lightning's Trainer, as train.py runs it (no validation).

    Returns the seconds of the timed steps (epoch end included) and of the epoch end alone."""
    from trainer.callbacks.backbone_freeze import BackboneFreeze
    from trainer.callbacks.progress_bar import SyncFreeRichProgressBar

    timer = StepTimer(warmup)
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=1,
        precision=precision,
        max_steps=steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        callbacks=[timer, BackboneFreeze(), SyncFreeRichProgressBar()],
        benchmark=accelerator == "cuda",
    )
    trainer.fit(model, train_dataloaders=loader)
    return timer.end - timer.start, timer.end - timer.steps_end


def cycle(loader) -> Callable[[], Iterator]:
    def gen() -> Iterator:
        while True:
            yield from loader

    return gen


def overhead(args: argparse.Namespace) -> dict[str, Any]:
    overrides = [
        f"model={args.model}",
        *([f"model.backbone={args.backbone}"] if args.backbone else []),
        f"model.input_size={args.input_size}",
        f"data.batch_size={args.batch_size}",
        "model.pretrained=false",
        "data.augment=[]",
        "print_config=false",
    ]
    cfg = compose(overrides)
    raw_s, ours_s, epoch_end_s = [], [], []
    timed = args.steps - args.warmup
    for r in range(args.repeats):
        for name in ("raw", "ours") if r % 2 == 0 else ("ours", "raw"):
            L.seed_everything(r, verbose=False)
            model, dm = build(cfg, args.steps)
            loader = dm.train_dataloader()
            if name == "raw":
                raw_s.append(raw_loop(model, cycle(loader), args.steps, args.warmup, "cpu"))
            else:
                seconds, epoch_end = ours(model, loader, args.steps, args.warmup, "cpu", "32-true")
                ours_s.append(seconds)
                epoch_end_s.append(epoch_end)
            console.print(
                f"  repeat {r + 1}/{args.repeats} {name}: {timed * args.batch_size / (raw_s if name == 'raw' else ours_s)[-1]:.1f} img/s"
            )
    raw_ips = [timed * args.batch_size / s for s in raw_s]
    ours_ips = [timed * args.batch_size / s for s in ours_s]
    ratios = [o / r for o, r in zip(ours_ips, raw_ips, strict=True)]
    return {
        "backbone": cfg.model.backbone,
        "input_size": args.input_size,
        "batch_size": args.batch_size,
        "timed_steps": timed,
        "raw_images_per_s": raw_ips,
        "ours_images_per_s": ours_ips,
        "ratio_per_repeat": ratios,
        "raw_median": statistics.median(raw_ips),
        "ours_median": statistics.median(ours_ips),
        "ratio_median": statistics.median(ratios),
        "ours_epoch_end_seconds": statistics.median(epoch_end_s),
    }


def pipeline(args: argparse.Namespace, consumed: float | None) -> dict[str, Any]:
    """The default experiment's training loader alone (with its augmentations)."""
    cfg = compose(
        [f"model.input_size={args.input_size}", "print_config=false", "model.pretrained=false"]
    )
    _, dm = build(cfg, 0)
    loader = dm.train_dataloader()
    for _ in itertools.islice(loader, 3):  # warm up workers, if any
        pass
    n, start = 0, time.perf_counter()
    for images, _ in loader:
        n += len(images)
    delivered = n / (time.perf_counter() - start)
    return {
        "delivered_images_per_s": delivered,
        "consumed_images_per_s": consumed,
        "headroom": delivered / consumed if consumed else None,
        "num_workers": loader.num_workers,
        "cached_in_memory": dm.cache_in_memory,
    }


def time_to_accuracy(args: argparse.Namespace) -> dict[str, Any]:
    """Run the default experiment until val/acc >= target; the dataset is generated beforehand."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from trainer.callbacks.stop_at_target import reached

    cfg = compose(["print_config=false"])
    import hydra

    hydra.utils.instantiate(cfg.data).prepare_data()  # cached dataset: generation is not timed
    run_dir = ROOT / "outputs" / "benchmark" / f"tta-{time.strftime('%Y%m%d-%H%M%S')}"
    command = [
        sys.executable,
        "train.py",
        f"hydra.run.dir={run_dir}",
        f"callbacks.stop_at_target.target={args.target}",
        "test=false",
        "print_config=false",
    ]
    start = time.time()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    total = time.time() - start
    if result.returncode != 0:
        raise RuntimeError(f"train.py failed:\n{result.stderr[-2000:]}")
    acc = EventAccumulator(str(run_dir / "tensorboard"))
    acc.Reload()
    hits = [e for e in acc.Scalars("val/acc") if reached(e.value, args.target)]
    return {
        "target": args.target,
        "seconds_to_target": hits[0].wall_time - start if hits else None,
        "epochs_to_target": len(acc.Scalars("val/acc")) if hits else None,
        "val_acc_at_target": hits[0].value if hits else None,
        "wall_seconds_total": total,
        "command": " ".join(command[1:]),
    }


def gpu(args: argparse.Namespace) -> dict[str, Any]:
    """ResNet-50, 224 px, synthetic uint8 batches already in GPU memory."""
    import timm

    from trainer.models.classifier import ImageClassifier
    from trainer.models.schedule import warmup_cosine

    if not torch.cuda.is_available():
        return {"skipped": "no CUDA device"}
    device, batch, steps, warmup = "cuda", args.gpu_batch_size, args.gpu_steps, 10
    images = torch.randint(0, 256, (batch, 3, 224, 224), dtype=torch.uint8, device=device)
    target = torch.randint(0, 1000, (batch,), device=device)

    def batches() -> Iterator:
        while True:
            yield images, target

    def variant(precision: str, channels_last: bool, compile_: bool) -> float:
        net = timm.create_model("resnet50", num_classes=1000).to(device)
        if channels_last:
            net.to(memory_format=torch.channels_last)
        step_net = torch.compile(net) if compile_ else net
        opt = torch.optim.AdamW(net.parameters(), lr=1e-3, fused=True)
        mean = torch.tensor([0.485, 0.456, 0.406], device=device).view(1, 3, 1, 1) * 255
        std = torch.tensor([0.229, 0.224, 0.225], device=device).view(1, 3, 1, 1) * 255
        start = 0.0
        for step in range(steps):
            if step == warmup:
                torch.cuda.synchronize()
                start = time.perf_counter()
            x = (images.float() - mean) / std
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = F.cross_entropy(step_net(x), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        torch.cuda.synchronize()
        return (steps - warmup) * batch / (time.perf_counter() - start)

    torch.backends.cudnn.benchmark = True
    out: dict[str, Any] = {"device": torch.cuda.get_device_name(), "batch_size": batch}
    wanted = {p.strip() for p in args.gpu_parts.split(",")}
    for precision in ("fp32", "bf16") if "variants" in wanted else ():
        for channels_last in (False, True):
            key = f"{precision}{'_channels_last' if channels_last else ''}_eager"
            out[key] = variant(precision, channels_last, False)
            console.print(f"  {key}: {out[key]:.0f} img/s")
    classes = [str(i) for i in range(1000)]
    raw_runs, our_runs, epoch_end_s = [], [], []
    for r in range(args.repeats if "ratio" in wanted else 0):
        for name in ("raw", "ours") if r % 2 == 0 else ("ours", "raw"):
            model = ImageClassifier(
                "resnet50",
                classes,
                pretrained=False,
                optimizer=partial(torch.optim.AdamW, lr=1e-3),
                scheduler=warmup_cosine,
                good_class=None,
            )
            if name == "raw":
                seconds = raw_loop(model, batches, steps, warmup, device)
                raw_runs.append((steps - warmup) * batch / seconds)
            else:
                loader = _FixedBatches(images, target, steps)
                seconds, epoch_end = ours(model, loader, steps, warmup, "cuda", "bf16-mixed")
                our_runs.append((steps - warmup) * batch / seconds)
                epoch_end_s.append(epoch_end)
    if raw_runs:
        out["ours_epoch_end_seconds"] = statistics.median(epoch_end_s)
        out["raw_bf16_channels_last"] = statistics.median(raw_runs)
        out["ours_bf16_channels_last"] = statistics.median(our_runs)
        out["ratio_ours_raw"] = out["ours_bf16_channels_last"] / out["raw_bf16_channels_last"]
        console.print(
            f"  raw {out['raw_bf16_channels_last']:.0f} img/s, ours "
            f"{out['ours_bf16_channels_last']:.0f} img/s, ratio {out['ratio_ours_raw']:.3f}"
        )
    if "compile" in wanted:  # last: compiling ResNet-50 takes a minute or more
        out["bf16_channels_last_compile"] = variant("bf16", True, True)
        console.print(
            f"  bf16_channels_last_compile: {out['bf16_channels_last_compile']:.0f} img/s"
        )
    return out


class _FixedBatches:
    """A 'loader' of the same GPU batch, ``steps`` times: no input pipeline in the way."""

    def __init__(self, images: torch.Tensor, target: torch.Tensor, steps: int) -> None:
        self.images, self.target, self.steps = images, target, steps

    def __iter__(self) -> Iterator:
        for _ in range(self.steps):
            yield self.images, self.target

    def __len__(self) -> int:
        return self.steps


def machine() -> dict[str, Any]:
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "load_1min_at_start": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--parts", default="overhead,pipeline,tta,gpu")
    parser.add_argument("--model", default="resnet10t", help="model config (configs/model/)")
    parser.add_argument("--backbone", default=None, help="any timm name instead of the config's")
    parser.add_argument("--input-size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--steps",
        type=int,
        default=65,
        help="steps per run, warmup included",
    )
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument(
        "--repeats", type=int, default=7, help="alternating raw/ours pairs (the median is reported)"
    )
    parser.add_argument("--target", type=float, default=0.95, help="val/acc for time to accuracy")
    parser.add_argument("--gpu-batch-size", type=int, default=256)
    parser.add_argument("--gpu-steps", type=int, default=200)
    parser.add_argument(
        "--gpu-parts",
        default="variants,ratio,compile",
        help="of the gpu part: variants (fp32/bf16 x channels_last), ratio (ours vs raw), compile",
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "outputs" / "benchmark" / "benchmark.json"
    )
    args = parser.parse_args()
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    unknown = parts - {"overhead", "pipeline", "tta", "gpu"}
    unknown |= {p.strip() for p in args.gpu_parts.split(",")} - {"variants", "ratio", "compile"}
    if unknown or args.steps <= args.warmup:
        parser.error(
            f"unknown parts {sorted(unknown)}" if unknown else "--steps must exceed --warmup"
        )

    results: dict[str, Any] = {"machine": machine()}
    if "overhead" in parts:
        console.rule("overhead: ours vs raw loop (CPU)")
        results["overhead"] = overhead(args)
    if "pipeline" in parts:
        console.rule("input pipeline")
        consumed = results.get("overhead", {}).get("ours_median")
        results["pipeline"] = pipeline(args, consumed)
    if "tta" in parts:
        console.rule("time to accuracy")
        results["tta"] = time_to_accuracy(args)
    if "gpu" in parts:
        console.rule("GPU: ResNet-50, 224 px, synthetic data")
        results["gpu"] = gpu(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print_table(results)
    console.print(f"JSON: {args.out}")


def print_table(results: dict[str, Any]) -> None:
    table = Table(
        title=f"benchmark ({results['machine']['cores']} cores, torch {results['machine']['torch']})"
    )
    table.add_column("part")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for part, values in results.items():
        if part == "machine":
            continue
        for key, value in values.items():
            if isinstance(value, list):
                continue
            text = f"{value:.3f}" if isinstance(value, float) else str(value)
            table.add_row(part, key, text)
    console.print(table)


if __name__ == "__main__":
    main()
