"""``evaluate(cfg)``: score a checkpoint on a split, write the report, apply the gate, remember it.

``python eval.py ckpt_path=PATH`` rebuilds the model from the checkpoint alone (weights_only) and
the data from the checkpoint's stored data config, so it evaluates on the test split of the data
the model was trained on; ``data=folder data.root=DIR`` (any ``data=...`` choice) evaluates on
other data, ``data.<key>=...`` alone changes a key of the stored config. The report of a run:

    <run folder>/metrics.json            every metric, the confusion matrix, the operating point
    <run folder>/figures/*.png           confusion matrix, ROC and PR curves, reliability diagram
    <run folder>/tensorboard/            the same scalars and figures
    <checkpoint folder>/model_card.md    regenerated (a card a person wrote is kept)

``finish_training`` is the same report at the end of ``train()``, for the best checkpoint, plus
the operating point written into that checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from trainer import gate as gates
from trainer import model_card, plots
from trainer.checkpoint import classifier_from_checkpoint, load_checkpoint
from trainer.errors import ConfigError, DataError
from trainer.eval_metrics import ECE_BINS, Evaluation, compute_metrics, defect_scores
from trainer.finetune import leave_out_trained
from trainer.history import config_digest, new_run_id, now_utc, record_run, strict_json
from trainer.operating_point import choose_operating_point, rates_at, write_to_checkpoint
from trainer.utils.atomic import atomic_write
from trainer.utils.lineage import lineage
from trainer.utils.rich_utils import console, print_metrics_table

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


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
    figs: dict[str, Any] = field(default_factory=dict)  # the matplotlib Figures, for TensorBoard

    @property
    def metrics(self) -> dict[str, float]:
        out = dict(self.evaluation.scalars)
        if self.op_test:
            out[f"{self.split}/defect_recall_at_op"] = self.op_test["defect_recall"]
            out[f"{self.split}/false_alarm_rate_at_op"] = self.op_test["false_alarm_rate"]
        return out


# ---------------------------------------------------------------------------------------------
# The model and the data, from the checkpoint
# ---------------------------------------------------------------------------------------------


def model_from_checkpoint(ckpt: Mapping[str, Any], path: str | Path) -> Any:
    """The ImageClassifier a checkpoint describes (see ``classifier_from_checkpoint``)."""
    return classifier_from_checkpoint(dict(ckpt), path)


def _task_overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    try:
        return list(HydraConfig.get().overrides.task)
    except ValueError:  # not under Hydra (a library call): no command-line overrides
        return []


def data_config(cfg: DictConfig, meta: Mapping[str, Any]) -> DictConfig:
    """The checkpoint's data config, with the command line's ``data.<key>=`` applied; or, when
    the command line chose a data option (``data=folder``), the composed one."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = _task_overrides()
    if any(o.lstrip("+~").split("=", 1)[0] == "data" for o in overrides):
        return cfg.data
    stored = (meta.get("config") or {}).get("data")
    if not stored:
        if cfg.get("data") is None:
            raise ConfigError("data: the checkpoint stores no data config; pass data=... ")
        return cfg.data
    data = OmegaConf.create(stored)
    keyed = [o for o in overrides if o.lstrip("+~").startswith("data.")]
    for override in OverridesParser.create().parse_overrides(keyed):
        key = override.key_or_group.split(".", 1)[1]
        OmegaConf.update(data, key, override.value(), force_add=True)
    return data


def label_map(data_classes: list[str], model_classes: list[str], root: Any) -> Tensor:
    """Data label -> model label; a class the model does not know is an error."""
    unknown = [c for c in data_classes if c not in model_classes]
    if unknown:
        raise DataError(
            f"data.root: '{root}' has classes {unknown} that the model does not know "
            f"(it knows {model_classes}); remove those folders or train a model with them"
        )
    return torch.tensor([model_classes.index(c) for c in data_classes])


@contextlib.contextmanager
def true_float32() -> Iterator[None]:
    """Matmuls and convolutions in full float32, not TF32 (which ``train()`` allows on a GPU).

    The operating point is chosen on these scores and the bundle runs float32 on ONNX Runtime:
    TF32 keeps 10 mantissa bits, enough to move a score across the threshold.
    """
    precision = torch.get_float32_matmul_precision()
    cudnn_tf32 = torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(precision)
        torch.backends.cudnn.allow_tf32 = cudnn_tf32


@torch.no_grad()
def predict(model: Any, loader: Any, device: torch.device, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Logits and model-order targets of every batch of ``loader``, in float32 (no TF32)."""
    model.to(device).eval()
    logits, target = [], []
    with true_float32():
        for images, y in loader:
            logits.append(model(model.normalize(images.to(device))).float().cpu())
            target.append(labels[y])
    return torch.cat(logits), torch.cat(target)


def split_loader(datamodule: Any, split: str) -> Any:
    """A loader over ``split`` without augmentation, or None when the data has no such split."""
    from torch.utils.data import DataLoader

    from trainer.data.dataset import ImageSamples

    if not datamodule.scan.splits.get(split):
        return None
    if split in ("val", "test"):  # what the test step reads, all of it in this one process
        return datamodule.eval_dataloader(split)
    pre = datamodule.preprocessing
    samples = ImageSamples(
        datamodule.scan.splits[split], size=pre["resize"], interpolation=pre["interpolation"]
    )
    return DataLoader(samples, batch_size=datamodule.batch_size, shuffle=False)


def _split_logits(
    model: Any, datamodule: Any, split: str, device: torch.device, labels: Tensor
) -> tuple[Tensor, Tensor] | None:
    loaders = [split_loader(datamodule, s) for s in (SPLITS if split == "all" else (split,))]
    outs = [predict(model, loader, device, labels) for loader in loaders if loader is not None]
    if not outs:
        return None
    return torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs])


# ---------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------


def evaluate_model(
    model: Any,
    datamodule: Any,
    split: str,
    good_class: str | None,
    target_recall: float,
    device: torch.device,
    stored_op: Mapping[str, Any] | None = None,
) -> Report:
    """Metrics of ``split``, and the operating point (chosen on val, or ``stored_op``)."""
    if split not in (*SPLITS, "all"):
        raise ConfigError(f"split: '{split}' is not one of train, val, test, all")
    classes = list(model.class_names)
    labels = label_map(datamodule.class_names, classes, datamodule.dataset_root)
    got = _split_logits(model, datamodule, split, device, labels)
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
        val = _split_logits(model, datamodule, "val", device, labels)
        if val is None or not 0 < int((val[1] != good).sum()) < len(val[1]):
            log.warning("No operating point: the val split needs good and defective images.")
            return report
        val_score = defect_scores(val[0].softmax(-1), good)
        op = choose_operating_point(val_score, val[1] != good, target_recall, good_class)
        report.operating_point = {**op, "source": "val split"}
    score = defect_scores(evaluation.probs, good)
    report.op_test = rates_at(score, evaluation.target != good, report.operating_point["threshold"])
    return report


def write_report(report: Report, out_dir: Path, extra: Mapping[str, Any]) -> dict[str, Any]:
    """metrics.json and the PNG figures in ``out_dir``; returns what metrics.json holds."""
    ev, split = report.evaluation, report.split
    figs = {
        "confusion_matrix": plots.confusion_matrix_figure(
            ev.confusion, report.class_names, f"confusion matrix ({split})"
        ),
        "roc_pr": plots.roc_pr_figure(ev.curves, report.class_names, ev.scalars, split),
        "reliability": plots.reliability_figure(
            ev.probs, ev.target, ECE_BINS, ev.scalars[f"{split}/ece"]
        ),
    }
    for name, fig in figs.items():
        report.figures[name] = plots.save(fig, out_dir / "figures" / f"{name}.png")
    op = report.operating_point
    content = {
        **extra,
        "split": split,
        "data": report.data,
        "metrics": report.metrics,
        "confusion_matrix": {
            "classes": report.class_names,
            "rows_true_columns_predicted": ev.confusion.tolist(),
        },
        "operating_point": {**op, split: report.op_test} if op else None,
        "figures": {k: str(v) for k, v in report.figures.items()},
    }
    # nan (an AUROC with nothing to rank) as null: NaN is not JSON, and jq or a browser refuse it
    atomic_write(out_dir / "metrics.json", json.dumps(strict_json(content), indent=2, default=str))
    report.figs = figs
    return content


def log_to(loggers: list[Any], report: Report, scalars: bool = True) -> None:
    """Scalars to every Lightning logger; figures to TensorBoard (and MLflow, as artifacts)."""
    from lightning.pytorch.loggers import MLFlowLogger, TensorBoardLogger

    figs = report.figs
    for logger in loggers:
        if scalars:
            logger.log_metrics(report.metrics, step=0)
        if isinstance(logger, TensorBoardLogger):
            for name, fig in figs.items():
                logger.experiment.add_figure(f"{report.split}/{name}", fig, 0, close=False)
        if isinstance(logger, MLFlowLogger):
            for path in report.figures.values():
                logger.experiment.log_artifact(logger.run_id, str(path), "figures")
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


def _experiment() -> str | None:
    """The experiment config applied, if any (``data=folder`` names ``folder_defect``, which is
    optional and absent: Hydra still lists it among the choices)."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    try:
        choice = HydraConfig.get().runtime.choices.get("experiment")
    except ValueError:
        return None
    hydra_global = GlobalHydra.instance()
    if choice is None or not hydra_global.is_initialized():
        return choice
    known = hydra_global.config_loader().get_group_options("experiment")
    return choice if choice in known else None


def remember(
    cfg: DictConfig,
    task: str,
    started: str,
    meta: Mapping[str, Any],
    metrics: Mapping[str, float],
    checkpoint: str | None,
    gate_result: str,
    fingerprint: str | None,
) -> None:
    """One row in the run history (rank zero only); a history switched off is skipped."""
    history = cfg.get("history") or {}
    if not history.get("path"):
        return
    info = lineage(cfg.paths.root_dir)
    record_run(
        history["path"],
        {
            "run_id": new_run_id(),
            "started_utc": started,
            "ended_utc": now_utc(),
            "task": task,
            "experiment": _experiment(),
            "tags": list(cfg.get("tags") or []),
            "command": info["command"],
            "overrides": _task_overrides(),
            "git_commit": info["git_commit"],
            "git_dirty": info["git_dirty"],
            "config_digest": config_digest(OmegaConf.to_container(cfg, resolve=True)),
            "data_fingerprint": fingerprint,
            "backbone": meta.get("backbone"),
            "metrics": dict(metrics),
            "checkpoint": checkpoint,
            "gate": gate_result,
            "output_dir": str(cfg.paths.output_dir),
        },
        journal_mode=history.get("journal_mode", "wal"),
    )


def _gate(cfg: DictConfig, metrics: Mapping[str, float]) -> tuple[list[gates.Check], str]:
    if not gates.enabled(cfg.get("gate")):
        return [], "off"
    checks = gates.evaluate_gate(cfg.gate, metrics)
    return checks, "passed" if all(c.passed for c in checks) else "failed"


def _print_gate(checks: list[gates.Check]) -> None:
    for check in checks:
        color = "green" if check.passed else "red"
        console.print(f"gate: [{color}]{check}[/{color}]", highlight=False, soft_wrap=True)


def _device(cfg: DictConfig) -> torch.device:
    wanted = str(cfg.get("device") or "auto")
    if wanted == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(wanted)


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate ``cfg.ckpt_path`` as the config says; returns what metrics.json holds.

    Raises:
        GateFailed: after writing everything, when a gate bound fails.
    """
    from trainer.train import instantiate_group

    started = now_utc()
    if not cfg.get("ckpt_path"):
        raise ConfigError("ckpt_path: required: python eval.py ckpt_path=PATH/TO/epoch_NNN.ckpt")
    ckpt_path = Path(cfg.ckpt_path).expanduser().resolve()
    ckpt = load_checkpoint(ckpt_path)
    model = model_from_checkpoint(ckpt, ckpt_path)
    meta = dict(ckpt["trainer_metadata"])
    data_cfg = data_config(cfg, meta)
    datamodule = hydra.utils.instantiate(data_cfg)
    datamodule.prepare_data()
    # never score a model on an image it (or a model it was fine-tuned from) trained on; val
    # too: the operating point is chosen there
    split = str(cfg.get("split", "test"))
    scored = SPLITS if split == "all" else (split,)
    splits = tuple(s for s in SPLITS if s in scored or s in ("val", "test"))
    dropped = leave_out_trained(datamodule, meta, splits, "eval", "model", refuse_empty=False)
    if dropped and all(not datamodule.scan.splits.get(s) for s in scored):
        what = "image" if split == "all" else f"{split} image"
        raise DataError(
            f"split: every {what} of data.root '{datamodule.dataset_root}' is one the model "
            "trained on; evaluate it on images it has not seen"
        )
    datamodule.set_preprocessing(model.preprocessing)
    good_class = data_cfg.get("good_class", "good")

    report = evaluate_model(
        model,
        datamodule,
        split,
        good_class,
        float(cfg.operating_point.target_recall),
        _device(cfg),
        stored_op=None if cfg.operating_point.get("recompute") else meta.get("operating_point"),
    )
    metrics = report.metrics
    checks, gate_result = _gate(cfg, metrics)  # a gate naming an unknown metric fails here
    out_dir = Path(cfg.paths.output_dir)
    same = report.data.get("fingerprint") == (meta.get("data") or {}).get("fingerprint")
    content = write_report(
        report,
        out_dir,
        {
            "checkpoint": str(ckpt_path),
            "same_data_as_training": same,
            "gate": gates.summary(checks) if checks else None,
        },
    )
    log_to(instantiate_group(cfg.get("logger")), report)
    print_metrics_table(metrics, title=f"{report.split} metrics of {ckpt_path.name}")
    if report.operating_point:
        op, rates = report.operating_point, report.op_test
        console.print(
            f"Operating point ({op['source']}): defect when {op['score']} >= "
            f"{op['threshold']:.4g}: defect recall {rates['defect_recall']:.3f}, "
            f"false alarms {rates['false_alarm_rate']:.3f} on {report.split}",
            highlight=False,
            soft_wrap=True,
        )
    if cfg.get("model_card", True):
        write_card(report, meta, ckpt_path, config_digest(meta.get("config") or {}), out_dir)
    remember(
        cfg, "eval", started, meta, metrics, str(ckpt_path), gate_result, report.data["fingerprint"]
    )
    console.print(f"Report: [bold]{out_dir / 'metrics.json'}[/bold]", soft_wrap=True)
    _print_gate(checks)
    gates.enforce(checks)
    return content


def finish_training(
    cfg: DictConfig, trainer: Any, model: Any, datamodule: Any, metrics: dict[str, float]
) -> dict[str, float]:
    """The end of ``train()``: operating point into the best checkpoint, report, model card,
    run history, gate. Returns the metrics with the report's added (the test step's win).

    Raises:
        GateFailed: when a gate bound fails (after the history records it).
    """
    if not trainer.is_global_zero:
        return metrics
    meta = {  # what on_save_checkpoint stores, also when no checkpoint was saved
        **model.run_metadata,
        "class_names": model.class_names,
        "preprocessing": model.preprocessing,
        "backbone": model.hparams.backbone,
    }
    started = (meta.get("lineage") or {}).get("created_utc") or now_utc()
    best = getattr(trainer.checkpoint_callback, "best_model_path", "") or ""
    out_dir = Path(cfg.paths.output_dir)
    report = None
    if best and cfg.get("test") and cfg.get("report", True):
        model.load_state_dict(load_checkpoint(best)["state_dict"])
        report = evaluate_model(
            model,
            datamodule,
            "test",
            cfg.data.get("good_class"),
            float(cfg.operating_point.target_recall),
            trainer.strategy.root_device,
        )
        if report.operating_point:
            op = {k: v for k, v in report.operating_point.items() if k != "source"}
            write_to_checkpoint(best, op)
            meta["operating_point"] = op
        metrics = {**report.metrics, **metrics}
    checks, gate_result = _gate(cfg, metrics)
    if report is not None:
        summary = gates.summary(checks) if checks else None
        write_report(report, out_dir, {"checkpoint": best, "gate": summary})
        from trainer.utils.loggers import tensorboard_logger

        tb = tensorboard_logger(trainer)
        log_to([tb] if tb else [], report, scalars=False)  # the test step logged the scalars
        write_card(report, meta, Path(best), config_digest(meta.get("config") or {}), out_dir)
    fingerprint = (meta.get("data") or {}).get("fingerprint")
    remember(cfg, "train", started, meta, metrics, best or None, gate_result, fingerprint)
    _print_gate(checks)
    gates.enforce(checks)
    return metrics
