"""Benchmark serving on this machine: model latency (ONNX Runtime against PyTorch eager, int8
against float32) and the HTTP server under a bounded load from this separate process.

Examples:
    python scripts/bench/bench_serve.py                       # resnet18 at 96 px, random weights
    python scripts/bench/bench_serve.py --ckpt outputs/train/runs/<time>/checkpoints/epoch_007.ckpt
    python scripts/bench/bench_serve.py --requests 2000 --concurrency 8 --out outputs/serve.json

Two bundles of the checkpoint are exported: float32 and int8 (``quantize=int8``, its gate
included: calibrated on the checkpoint's train split, recall on its val split; the random
checkpoint's data is a small generated board set).

1. Latency: batch 1, uint8 input, normalisation included on both sides; eager and every ONNX
   Runtime setting (intra-op threads x graph optimisation level), of the float32 and of the int8
   model, measured in alternating rounds so that load from other processes hits them alike; the
   median of all runs.
2. Server: ``python -m trainer.serve`` on a free loopback port, for each bundle; ``--requests``
   multipart POSTs of one generated board each, ``--concurrency`` at a time (httpx, asyncio),
   stopped at ``--deadline`` seconds; throughput, p50 and p99 latency, errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

try:
    import trainer  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ["good", "misplaced_component", "missing_component", "solder_bridge"]


def random_checkpoint(folder: Path, backbone: str, size: int, data: dict) -> Path:
    """A checkpoint of ``backbone`` with random weights, shaped as training writes them, whose
    data is ``data`` (a data config)."""
    import torch

    from trainer.models.classifier import ImageClassifier

    torch.manual_seed(0)
    model = ImageClassifier(backbone, CLASSES, pretrained=False, input_size=size)
    meta = {
        "class_names": CLASSES,
        "preprocessing": model.preprocessing,
        "backbone": backbone,
        "config": {"data": data},
    }
    path = folder / "random.ckpt"
    torch.save({"state_dict": model.state_dict(), "trainer_metadata": meta}, path)
    return path


def board_data(folder: Path) -> dict:
    """The data config of a small generated board set in ``folder``: 128 px (the default
    experiment's image size), 64 train, 64 val, 32 test boards."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    sizes = {"image_size": 128, "num_train": 64, "num_val": 64, "num_test": 32, "seed": 7}
    overrides = [f"paths.data_dir={folder}", *(f"data.generator.{k}={v}" for k, v in sizes.items())]
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    return OmegaConf.to_container(cfg.data, resolve=True)


def boards(data: dict) -> list[Path]:
    """The test boards of ``data`` (generated on first use)."""
    import hydra

    datamodule = hydra.utils.instantiate(data)
    datamodule.prepare_data()
    return sorted(s.path for s in datamodule.scan.splits["test"])


def timed(fn, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1e3)
    return out


def latency(ckpt: Path, models: dict[str, Path], runs: int, rounds: int) -> dict:
    """Median batch-1 latency (ms) of eager PyTorch and of ONNX Runtime settings, for each of
    ``models`` (precision -> ONNX file)."""
    import numpy as np
    import onnxruntime as ort
    import torch

    from trainer.checkpoint.read import load_classifier
    from trainer.export.onnx_export import deployable

    threads = os.cpu_count() or 1
    model = load_classifier(ckpt)
    meta = model.run_metadata
    module = deployable(model)
    size = list(meta["preprocessing"]["resize"])
    x = torch.randint(0, 256, (1, 3, *size), dtype=torch.uint8)
    x_np = x.numpy()

    def eager() -> None:
        with torch.inference_mode():
            module(x)

    def ort_run(session: ort.InferenceSession) -> Callable[[], None]:
        return lambda: session.run(["probabilities"], {"image": x_np})

    levels = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    # name -> (function, torch threads while it runs)
    candidates = {f"torch eager threads={n}": (eager, n) for n in sorted({1, threads})}
    for precision, path in models.items():
        for n in sorted({1, threads}):
            for name, level in levels.items():
                opts = ort.SessionOptions()
                opts.intra_op_num_threads = n
                opts.inter_op_num_threads = 1
                opts.graph_optimization_level = level
                session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
                prefix = "ort" if precision == "fp32" else f"ort {precision}"
                candidates[f"{prefix} threads={n} opt={name}"] = (ort_run(session), threads)
    samples: dict[str, list[float]] = {k: [] for k in candidates}
    for _ in range(rounds):
        for key, (fn, torch_threads) in candidates.items():
            torch.set_num_threads(torch_threads)
            timed(fn, 3)  # warm-up after the switch
            samples[key] += timed(fn, runs // rounds)
    table = {
        k: {
            "median_ms": statistics.median(v),
            "p90_ms": float(np.percentile(v, 90)),
            "runs": len(v),
        }
        for k, v in samples.items()
    }

    def best(prefix: str) -> str:
        return min((k for k in table if k.startswith(prefix)), key=lambda k: table[k]["median_ms"])

    one = "threads=1 opt=all"  # score.py's setting
    return {
        "backbone": meta["backbone"],
        "input": [1, 3, *size],
        "results": table,
        "best_ort": best("ort threads"),
        "best_eager": best("torch"),
        "ort_over_eager": table[best("ort threads")]["median_ms"]
        / table[best("torch")]["median_ms"],
        "int8_over_fp32": table[f"ort int8 {one}"]["median_ms"] / table[f"ort {one}"]["median_ms"],
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def load(
    url: str, payloads: list[tuple[str, bytes]], n: int, concurrency: int, deadline: float
):
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    semaphore = asyncio.Semaphore(concurrency)
    stop = time.monotonic() + deadline
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:

        async def one(i: int) -> None:
            async with semaphore:
                if time.monotonic() > stop:
                    errors.append("deadline")
                    return
                name, data = payloads[i % len(payloads)]
                start = time.perf_counter()
                try:
                    r = await client.post(url, files={"file": (name, data, "image/png")})
                    ok = r.status_code == 200 and len(r.json()["predictions"]) == 1
                    if not ok:
                        errors.append(f"{r.status_code}: {r.text[:100]}")
                except Exception as err:  # a failed request is a result here, not a crash
                    errors.append(repr(err)[:100])
                    return
                latencies.append((time.perf_counter() - start) * 1e3)

        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        wall = time.perf_counter() - start
    return latencies, errors, wall


def serve_load(
    bundle: Path, files: list[Path], args: argparse.Namespace, threads: int, precision: str
) -> dict:
    import numpy as np

    port = free_port()
    env = {**os.environ, "SCORE_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "trainer.serve", str(bundle), "--port", str(port)]
    server = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    url = f"http://127.0.0.1:{port}"
    try:
        import httpx

        for _ in range(300):
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        payloads = [(f.name, f.read_bytes()) for f in files]
        asyncio.run(load(f"{url}/predict", payloads, 50, args.concurrency, 60))  # warm-up
        lat, errors, wall = asyncio.run(
            load(f"{url}/predict", payloads, args.requests, args.concurrency, args.deadline)
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {
        "precision": precision,
        "ort_threads_per_request": threads,
        "requests": args.requests,
        "concurrency": args.concurrency,
        "ok": len(lat),
        "errors": len(errors),
        "error_examples": sorted(set(errors))[:3],
        "wall_s": wall,
        "throughput_rps": len(lat) / wall,
        "p50_ms": float(np.percentile(lat, 50)) if lat else None,
        "p99_ms": float(np.percentile(lat, 99)) if lat else None,
        "max_ms": max(lat) if lat else None,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", default=None, help="checkpoint (default: random resnet18 weights)")
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--size", type=int, default=96, help="input side (the default experiment's)")
    p.add_argument("--runs", type=int, default=300, help="timed runs per latency candidate")
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds the runs split into")
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--deadline", type=float, default=300.0, help="seconds; later requests fail")
    p.add_argument("--server-threads", default="1,2", help="ORT threads per request to compare")
    p.add_argument("--out", default=str(ROOT / "outputs" / "bench" / "serve.json"))
    args = p.parse_args()

    from trainer.export.bundle import export_bundle

    load_at_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = board_data(tmp)
        files = boards(data)
        ckpt = (
            Path(args.ckpt) if args.ckpt else random_checkpoint(tmp, args.backbone, args.size, data)
        )
        test_dir = files[0].parents[1]
        bundles = {
            "fp32": export_bundle(ckpt, out=tmp / "fp32", images=test_dir),
            "int8": export_bundle(ckpt, out=tmp / "int8", images=test_dir, quantize="int8"),
        }
        lat = latency(
            ckpt, {k: b / "model.onnx" for k, b in bundles.items()}, args.runs, args.rounds
        )
        gate = json.loads((bundles["int8"] / "manifest.json").read_text())["parity"]["int8"]
        servers = [
            serve_load(bundle, files, args, int(t), precision)
            for precision, bundle in bundles.items()
            for t in args.server_threads.split(",")
        ]
    result = {
        "machine": f"{os.cpu_count()}-core {platform.machine()} CPU, no GPU",
        "load_average_at_start": load_at_start,
        "load_average_at_end": os.getloadavg(),
        "checkpoint": args.ckpt or f"random {args.backbone}",
        "latency": lat,
        "int8_gate": gate,
        "server": servers,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"Latency, batch 1, {lat['backbone']} {lat['input']} (median of {args.runs} runs):")
    for key, row in lat["results"].items():
        print(f"  {key:<32} {row['median_ms']:7.2f} ms   p90 {row['p90_ms']:7.2f} ms")
    print(f"  best ONNX Runtime / best eager: {lat['ort_over_eager']:.2f}")
    print(f"  int8 / float32, 1 thread, opt=all: {lat['int8_over_fp32']:.2f}")
    print(
        f"int8 gate: label agreement {gate['agreement']:.3f} on {gate['images']} images, defect "
        f"recall {gate['defect_recall']['int8']} (float32 {gate['defect_recall']['fp32']})"
    )
    for s in servers:
        print(
            f"Server {s['precision']}, ORT threads {s['ort_threads_per_request']}: "
            f"{s['ok']}/{s['requests']} ok, "
            f"{s['errors']} errors, {s['throughput_rps']:.1f} req/s, p50 {s['p50_ms']:.1f} ms, "
            f"p99 {s['p99_ms']:.1f} ms (concurrency {s['concurrency']})"
        )
    print(f"Written: {args.out}")


if __name__ == "__main__":
    main()
