"""The evaluator: a model's figures on a split and its operating point, as one ``Report``, and the
files a report is published as. ``eval.py`` (``trainer.tasks.evaluate``) and the end of training
(``trainer.tasks.train``) both use it:

    <run folder>/metrics.json            every metric, the confusion matrix, the operating point
    <run folder>/figures/*.png           confusion matrix, ROC and PR curves, reliability diagram
    <run folder>/report.html             all of it as one page (``html_report``, report_html)
    <run folder>/tensorboard/            the same scalars and figures
    <checkpoint folder>/model_card.md    regenerated (a card a person wrote is kept)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from trainer.data.image_folder import SPLITS
from trainer.errors import ConfigError, DataError
from trainer.evaluation import model_card, plots
from trainer.evaluation.anomaly import (
    PASS_FAIL,
    anomaly_evaluation,
    anomaly_operating_point,
    anomaly_scores,
)
from trainer.evaluation.operating_point import choose_operating_point, rates_at
from trainer.evaluation.pixel_auroc import pixel_auroc
from trainer.evaluation.predictions import label_map, split_loader, split_logits
from trainer.metrics.summary import ECE_BINS, Evaluation, compute_metrics, defect_scores
from trainer.utils.atomic import atomic_write
from trainer.utils.jsonsafe import strict_json

__all__ = ["Report", "evaluate_model", "log_to", "write_card", "write_report"]

log = logging.getLogger(__name__)
ANOMALY = "anomaly"  # a model's ``kind`` (trainer.models.patchcore.KIND)


@dataclass
class Report:
    """An evaluation's results as written to metrics.json."""

    split: str
    evaluation: Evaluation
    class_names: list[str]
    data: dict[str, Any]
    operating_point: dict[str, Any] | None = None
    op_test: dict[str, float] | None = None
    figures: dict[str, Path] = field(default_factory=dict)  # the PNG files
    kind: str = "classifier"  # or "anomaly" (trainer.evaluation.anomaly): one score per image

    @property
    def confusion_names(self) -> list[str]:
        """The confusion matrix's rows and columns: the classes, or good/defect."""
        return PASS_FAIL if self.kind == ANOMALY else self.class_names

    @property
    def metrics(self) -> dict[str, float]:
        out = dict(self.evaluation.scalars)
        if self.op_test:
            out[f"{self.split}/defect_recall_at_op"] = self.op_test["defect_recall"]
            out[f"{self.split}/false_alarm_rate_at_op"] = self.op_test["false_alarm_rate"]
        return out


def evaluate_model(
    model: Any,
    datamodule: Any,
    split: str,
    good_class: str | None,
    target_recall: float,
    device: torch.device,
    stored_op: Mapping[str, Any] | None = None,
    target_false_reject: float = 0.01,
) -> Report:
    """Metrics of ``split``, and the operating point (chosen on val, or ``stored_op``).

    ``target_false_reject``: an anomaly model's threshold when val holds no defect (the share
    of good val images it may flag; ``trainer.evaluation.anomaly``).
    """
    if split not in (*SPLITS, "all"):
        raise ConfigError(f"split: '{split}' is not one of train, val, test, all")
    classes = list(model.class_names)
    labels = label_map(datamodule.class_names, classes, datamodule.dataset_root)
    if getattr(model, "kind", None) == ANOMALY:
        return _evaluate_anomaly(
            model, datamodule, split, labels, device, target_recall, target_false_reject, stored_op
        )
    got = split_logits(model, datamodule, split, device, labels)
    if got is None:
        raise DataError(f"data.root: '{datamodule.dataset_root}' has no {split} images")
    name = "test" if split == "all" else split
    evaluation = compute_metrics(*got, classes, good_class, name)
    # the digests of every training image are the checkpoint's business, not the report's
    data = {k: v for k, v in datamodule.summary().items() if k != "trained_on_sha256_16"}
    report = Report(name, evaluation, classes, data)
    if good_class not in classes:
        return report
    good = classes.index(good_class)
    if stored_op and float(stored_op.get("target_recall", -1)) == float(target_recall):
        report.operating_point = {**stored_op, "source": "checkpoint"}
    else:
        val = split_logits(model, datamodule, "val", device, labels)
        if val is None or not 0 < int((val[1] != good).sum()) < len(val[1]):
            log.warning("No operating point: the val split needs good and defective images.")
            return report
        val_score = defect_scores(val[0].softmax(-1), good)
        op = choose_operating_point(val_score, val[1] != good, target_recall, good_class)
        report.operating_point = {**op, "source": "val split"}
    score = defect_scores(evaluation.probs, good)
    report.op_test = rates_at(score, evaluation.target != good, report.operating_point["threshold"])
    return report


def _split_scores(
    model: Any, datamodule: Any, split: str, device: torch.device, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor] | None:
    loaders = [split_loader(datamodule, s) for s in (SPLITS if split == "all" else (split,))]
    outs = [anomaly_scores(model, ld, device, labels) for ld in loaders if ld is not None]
    if not outs:
        return None
    return torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs])


def _evaluate_anomaly(
    model: Any,
    datamodule: Any,
    split: str,
    labels: torch.Tensor,
    device: torch.device,
    target_recall: float,
    target_false_reject: float,
    stored_op: Mapping[str, Any] | None,
) -> Report:
    """An anomaly model's report: image AUROC overall and per defect kind, pixel AUROC where
    the data has masks (``pixel_auroc``), and the pass/fail figures at the threshold (stored, or
    chosen on val: ``anomaly_operating_point``)."""
    classes, good_class = list(model.class_names), model.class_names[model.good_index]
    got = _split_scores(model, datamodule, split, device, labels)
    if got is None:
        raise DataError(f"data.root: '{datamodule.dataset_root}' has no {split} images")
    same = stored_op and (
        float(stored_op.get("target_recall", -1)) == float(target_recall)
        and float(stored_op.get("target_false_reject", -1)) == float(target_false_reject)
    )
    op = None
    if same:
        op = {**stored_op, "source": "checkpoint"}
    else:
        val = _split_scores(model, datamodule, "val", device, labels)
        if val is None or not (val[1] == model.good_index).any():
            log.warning("No operating point: the val split holds no good image.")
        else:
            op = anomaly_operating_point(
                val[0], val[1] != model.good_index, target_recall, target_false_reject, good_class
            )
            op["source"] = "val split"
    name = "test" if split == "all" else split
    threshold = op["threshold"] if op else None
    evaluation = anomaly_evaluation(*got, classes, good_class, name, threshold)
    pixel = pixel_auroc(model, datamodule, split, device)  # None without ground_truth/ masks
    if pixel is not None:
        evaluation.scalars[f"{name}/pixel_auroc"] = pixel
    data = {k: v for k, v in datamodule.summary().items() if k != "trained_on_sha256_16"}
    report = Report(name, evaluation, classes, data, op, kind=ANOMALY)
    if op:
        report.op_test = rates_at(got[0], got[1] != model.good_index, op["threshold"])
    return report


def _figures(report: Report) -> dict[str, Any]:
    ev, split = report.evaluation, report.split
    figs = {
        "confusion_matrix": plots.confusion_matrix_figure(
            ev.confusion, report.confusion_names, f"confusion matrix ({split})"
        ),
        "roc_pr": plots.roc_pr_figure(ev.curves, report.class_names, ev.scalars, split),
    }
    if report.kind == ANOMALY:
        threshold = (report.operating_point or {}).get("threshold")
        good = report.class_names.index((report.operating_point or {}).get("good_class", "good"))
        figs["score_histogram"] = plots.score_histogram_figure(
            ev.scores, ev.target != good, threshold, f"anomaly scores ({split})"
        )
    else:
        figs["reliability"] = plots.reliability_figure(
            ev.probs, ev.target, ECE_BINS, ev.scalars[f"{split}/ece"]
        )
    return figs


def write_report(report: Report, out_dir: Path, extra: Mapping[str, Any]) -> dict[str, Any]:
    """metrics.json and the PNG figures in ``out_dir``; returns what metrics.json holds."""
    ev, split = report.evaluation, report.split
    for name, fig in _figures(report).items():
        report.figures[name] = plots.save(fig, out_dir / "figures" / f"{name}.png")
    op = report.operating_point
    content = {
        **extra,
        "split": split,
        "data": report.data,
        "metrics": report.metrics,
        "confusion_matrix": {
            "classes": report.confusion_names,
            "rows_true_columns_predicted": ev.confusion.tolist(),
        },
        "operating_point": {**op, split: report.op_test} if op else None,
        "figures": {k: str(v) for k, v in report.figures.items()},
    }
    # nan (an AUROC with nothing to rank) as null: NaN is not JSON, and jq or a browser refuse it
    atomic_write(out_dir / "metrics.json", json.dumps(strict_json(content), indent=2, default=str))
    return content


def log_to(loggers: list[Any], report: Report, scalars: bool = True) -> None:
    """Scalars to every Lightning logger; the figures ``write_report`` saved to TensorBoard (as
    the PNGs, not rendered a second time), MLflow (artifacts) and W&B (images)."""
    from lightning.pytorch.loggers import MLFlowLogger, TensorBoardLogger, WandbLogger
    from PIL import Image

    from trainer.explain.render import as_hwc

    for logger in loggers:
        if scalars:
            logger.log_metrics(report.metrics, step=0)
        if isinstance(logger, TensorBoardLogger):
            for name, path in report.figures.items():
                with Image.open(path) as png:
                    image = as_hwc(png)
                logger.experiment.add_image(f"{report.split}/{name}", image, 0, dataformats="HWC")
        if isinstance(logger, MLFlowLogger):
            for path in report.figures.values():
                logger.experiment.log_artifact(logger.run_id, str(path), "figures")
        if isinstance(logger, WandbLogger):
            for name, path in report.figures.items():
                logger.log_image(f"{report.split}/{name}", [str(path)])
        logger.save()


def write_card(
    report: Report, meta: Mapping[str, Any], checkpoint: Path, digest: str, out_dir: Path
) -> list[Path]:
    """model_card.md next to the checkpoint and in ``out_dir`` (when they differ)."""
    written = []
    for folder in dict.fromkeys([checkpoint.parent, out_dir]):
        card = folder / "model_card.md"
        text = model_card.render(
            dict(meta),
            checkpoint,
            report.metrics,
            report.split,
            report.data,
            report.operating_point,
            report.op_test,
            model_card.relative_link(report.figures["confusion_matrix"], card),
            digest,
        )
        path = model_card.write(card, text)
        if path is None:
            log.warning("Kept %s: it was not written by trainer.", card)
        else:
            written.append(path)
    return written
