"""``predict(cfg)``: score unlabelled images with a checkpoint; one row per file, pass or fail.

``python predict.py ckpt_path=C images=DIR|FILE|GLOB`` writes ``<run>/predictions.csv`` and
``predictions.json``: columns ``path, label, p_<class>..., defect_score, pass, error``. Images are
decoded and resized by ``trainer.data.dataset.load_image`` and scored in float32 as
``trainer.evaluation.predictions`` scores a split, so the probabilities are those ``eval.py``
computes for the same files. ``defect_score`` is ``1 - p(good)`` (``defect_scores``) and an image
fails when it is ``>=`` the checkpoint's stored operating point, as ``rates_at`` counts. A file
that cannot be read gets its row with the error, and the others are scored. The batch is checked
against the checkpoint's data contract (``trainer.data.checks.drift``): "fits" or "retrain".
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from trainer.checkpoint.read import load_classifier
from trainer.data.checks.drift import DriftReport, compare
from trainer.data.checks.image_stats import FEATURES, image_to_rgb, rgb_stats
from trainer.data.checks.policy import Policy
from trainer.data.dataset import load_image
from trainer.data.image_folder import image_files
from trainer.errors import ConfigError, DataError
from trainer.evaluation.predictions import true_float32
from trainer.metrics.summary import defect_scores
from trainer.utils.atomic import atomic_write
from trainer.utils.jsonsafe import strict_json
from trainer.utils.rich_utils import console

__all__ = ["columns", "predict"]

log = logging.getLogger(__name__)

UNREADABLE = (DataError, OSError, ValueError, RuntimeError, Image.DecompressionBombError)


@dataclass
class Item:
    """One file as the loader read it: its model input, or why it could not be read."""

    index: int
    image: torch.Tensor | None = None
    mode: str = ""
    size: tuple[int, int] = (0, 0)
    features: list[float] = field(default_factory=list)  # FEATURES, for the drift test
    error: str = ""


class Files(Dataset):
    """The files as model inputs (``load_image``) and, for the drift test, as the contract
    describes images (mode, size, RGB statistics of the full image)."""

    def __init__(self, files: list[Path], preprocessing: dict[str, Any], stats: bool) -> None:
        self.files, self.stats = files, stats
        self.size, self.mode = preprocessing["resize"], preprocessing.get("interpolation")

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Item:
        path = self.files[index]
        item = Item(index)
        try:
            image = load_image(path, self.size, self.mode or "bilinear")
            if self.stats:
                with Image.open(path) as img:
                    item.mode, item.size, rgb = image_to_rgb(img)
                    item.features = rgb_stats(rgb)[3]
        except UNREADABLE as err:
            item.error = str(err.__cause__ or err).splitlines()[0]
            return item
        item.image = image
        return item


def columns(class_names: list[str]) -> list[str]:
    """The CSV's columns, in order (``score.py`` in a bundle writes the same)."""
    return ["path", "label", *(f"p_{c}" for c in class_names), "defect_score", "pass", "error"]


def _device(wanted: str) -> torch.device:
    if wanted == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if wanted.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device: '{wanted}' but this machine has no GPU; use device=auto|cpu")
    try:
        return torch.device(wanted)
    except RuntimeError as err:
        raise ConfigError(f"device: '{wanted}' is not auto, cpu, cuda or cuda:N") from err


def _positive(cfg: Any, key: str, minimum: int = 1) -> int:
    value = cfg.get(key)
    if not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{key}: {value!r} is not an integer >= {minimum}")
    return value


def _relative(files: list[Path]) -> list[Path]:
    """Each file below the folder all of them share: the overlays' tree."""
    root = os.path.commonpath([os.path.dirname(f) for f in files])
    return [Path(os.path.relpath(f, root)) for f in files]


def _caption(rel: Path, row: dict[str, Any]) -> list[str]:
    verdict = {True: "  PASS", False: "  FAIL"}.get(row["pass"], "")
    score = "" if row["defect_score"] is None else f"  defect score {row['defect_score']:.3f}"
    return [str(rel), f"{row['label']} ({row['p_' + row['label']]:.2f}){score}{verdict}"]


def _overlays(model: Any, x: torch.Tensor, rows: list, rels: list, out: Path, layers: Any) -> None:
    """``<out>/overlays/<relative path>.png``: each image beside its Grad-CAM, captioned."""
    from trainer.explain.gradcam import grad_cam
    from trainer.explain.render import explained_tile

    heatmaps, _ = grad_cam(model.net, model.normalize(x), layers)
    for image, heatmap, row, rel in zip(x.cpu(), heatmaps, rows, rels, strict=True):
        path = out / "overlays" / f"{rel}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        explained_tile(image, heatmap, _caption(rel, row)).save(path)


def _drift(contract: dict[str, Any] | None, items: list[Item], meta: dict) -> DriftReport | None:
    """``check_batch``'s verdict on the files, from what the loader gathered about each."""
    if not contract:
        return None
    read = [i for i in items if not i.error]
    policy = Policy.from_config((meta.get("config") or {}).get("validation"))
    features = np.array([i.features for i in read], dtype=np.float64)
    report = compare(
        contract,
        [i.mode for i in read],
        [i.size for i in read],
        features.reshape(len(read), len(FEATURES)),
        policy.drift,
    )
    if len(read) < len(items):
        report.warnings.append(f"{len(items) - len(read)} unreadable files left out")
    return report


def _write(out: Path, header: list[str], rows: list[dict[str, Any]], summary: dict) -> None:
    text = io.StringIO()
    writer = csv.DictWriter(text, header, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        shown = {k: "" if v is None else v for k, v in row.items()}
        shown["pass"] = {True: "true", False: "false"}.get(row["pass"], "")
        writer.writerow(shown)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "predictions.csv", text.getvalue())
    atomic_write(out / "predictions.json", json.dumps(strict_json(summary), indent=1))


class Scorer:
    """The model on its device and the pass/fail rule of its checkpoint."""

    def __init__(self, ckpt_path: str, device: torch.device) -> None:
        self.model = load_classifier(ckpt_path).to(device).eval()
        self.device, self.names = device, self.model.class_names
        meta = self.model.run_metadata
        self.operating_point = meta.get("operating_point") or {}
        data_cfg = (meta.get("config") or {}).get("data") or {}
        self.good = (
            self.operating_point.get("good_class")
            or data_cfg.get("good_class")
            or self.model.hparams.good_class
        )
        self.threshold = self.operating_point.get("threshold")
        if self.threshold is None or self.good not in self.names:
            log.warning(
                "ckpt_path: '%s' stores no operating point: the pass column is empty (evaluate "
                "it with eval.py, which chooses one)",
                ckpt_path,
            )
            self.threshold = None

    def rows(self, items: list[Item], paths: list[Path]) -> tuple[torch.Tensor | None, list]:
        """The batch's model input (None when no file could be read) and one row per item."""
        read = [i for i in items if i.image is not None]
        x = torch.stack([i.image for i in read]).to(self.device) if read else None
        probs = torch.empty(0, len(self.names))
        if x is not None:
            with torch.no_grad(), true_float32():  # as trainer.evaluation.predictions.predict
                probs = self.model(self.model.normalize(x)).float().cpu().softmax(dim=-1)
        scores = passed = None
        if self.good in self.names:
            scores = defect_scores(probs, self.names.index(self.good))
            if self.threshold is not None:  # in float32, as rates_at; a nan score fails
                passed = scores < torch.tensor(self.threshold, dtype=torch.float32)
        scored = iter(range(len(read)))
        rows = []
        for item in items:
            row: dict[str, Any] = dict.fromkeys(columns(self.names))
            row |= {"path": str(paths[item.index]), "error": item.error or None}
            if item.image is not None:
                k = next(scored)
                row["label"] = self.names[int(probs[k].argmax())]
                row |= {f"p_{c}": float(v) for c, v in zip(self.names, probs[k], strict=True)}
                row["defect_score"] = None if scores is None else float(scores[k])
                row["pass"] = None if passed is None else bool(passed[k])
            rows.append(row)
        return x, rows


def predict(cfg: Any) -> dict[str, Any]:
    """Score ``cfg.images`` with ``cfg.ckpt_path`` (configs/predict.yaml); what predictions.json
    holds. ``scored`` is 0 when no file could be read (the entry's exit code 1)."""
    from rich.progress import MofNCompleteColumn, Progress

    if not cfg.get("ckpt_path"):
        raise ConfigError("ckpt_path: required: python predict.py ckpt_path=C images=DIR")
    if not cfg.get("images"):
        raise ConfigError("images: required: a folder, an image file or a glob pattern")
    images = cfg.images if isinstance(cfg.images, str) else list(cfg.images)
    files = sorted(set(Path(os.path.abspath(f)) for f in image_files(images)))
    batch_size, workers = _positive(cfg, "batch_size"), _positive(cfg, "num_workers", 0)
    scorer = Scorer(cfg.ckpt_path, _device(str(cfg.get("device") or "auto")))
    model, meta = scorer.model, scorer.model.run_metadata
    contract = meta.get("data_contract")
    loader = DataLoader(
        Files(files, model.preprocessing, stats=bool(contract)),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=list,
    )
    layers = cfg.get("cam_layers") or "auto"
    layers = layers if isinstance(layers, str) else list(layers)
    out, rels = Path(cfg.paths.output_dir), _relative(files)
    rows: list[dict[str, Any]] = []
    items: list[Item] = []
    with Progress(*Progress.get_default_columns(), MofNCompleteColumn(), console=console) as bar:
        task = bar.add_task("predicting", total=len(files))
        for batch in loader:
            x, batch_rows = scorer.rows(batch, files)
            if x is not None and cfg.get("overlay"):
                read = [k for k, i in enumerate(batch) if i.image is not None]
                rel = [rels[batch[k].index] for k in read]
                _overlays(model, x, [batch_rows[k] for k in read], rel, out, layers)
            for item in batch:
                item.image = None  # what the drift test needs stays; the pixels go
            items += batch
            rows += batch_rows
            bar.advance(task, len(batch))

    drift = _drift(contract, items, meta)
    scored = sum(r["error"] is None for r in rows)
    summary = {
        "checkpoint": str(Path(cfg.ckpt_path).expanduser().resolve()),
        "images": len(rows),
        "scored": scored,
        "unreadable": len(rows) - scored,
        "device": str(scorer.device),
        "operating_point": scorer.operating_point or None,
        "drift": drift.to_dict() if drift else None,
        "columns": columns(scorer.names),
        "predictions": rows,
    }
    _write(out, columns(scorer.names), rows, summary)
    unreadable = [r for r in rows if r["error"]]
    for row in unreadable[:10]:
        log.warning("%s: %s", row["path"], row["error"])
    if len(unreadable) > 10:
        log.warning("%d more unreadable files: see predictions.csv", len(unreadable) - 10)
    _print_summary(summary, drift, out)
    return summary


def _print_summary(summary: dict[str, Any], drift: DriftReport | None, out: Path) -> None:
    from rich.markup import escape

    if drift is None:
        console.print("Data contract: none in the checkpoint; drift not checked", highlight=False)
    else:
        colour = "green" if drift.fits else "yellow"
        console.print(
            f"Data contract: [{colour}]{escape(drift.summary())}[/{colour}]", soft_wrap=True
        )
        for warning in drift.warnings:
            console.print(f"  [dim]{escape(warning)}[/dim]", highlight=False, soft_wrap=True)
    passed = [r["pass"] for r in summary["predictions"] if r["pass"] is not None]
    verdicts = f": {sum(passed)} pass, {len(passed) - sum(passed)} fail" if passed else ""
    unreadable = f" ({summary['unreadable']} unreadable)" if summary["unreadable"] else ""
    console.print(
        f"Scored {summary['scored']} of {summary['images']} images{verdicts}{unreadable}: "
        f"[bold]{escape(str(out / 'predictions.csv'))}[/bold]",
        highlight=False,
        soft_wrap=True,
    )
