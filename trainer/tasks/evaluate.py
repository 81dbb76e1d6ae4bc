"""``evaluate(cfg)``: score a checkpoint on a split, write the report, apply the gate, remember it.

``python eval.py ckpt_path=PATH`` rebuilds the model from the checkpoint alone (weights_only) and
the data from the checkpoint's stored data config, so it evaluates on the test split of the data
the model was trained on; ``data=folder data.root=DIR`` (any ``data=...`` choice) evaluates on
other data, ``data.<key>=...`` alone changes a key of the stored config. What it writes: see
``trainer.evaluation.report``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from trainer.checkpoint.finetune import leave_out_trained
from trainer.checkpoint.read import load_model
from trainer.data.image_folder import SPLITS
from trainer.errors import ConfigError, DataError
from trainer.evaluation import gate as gates
from trainer.evaluation.html_report import write_html
from trainer.evaluation.report import evaluate_model, log_to, write_card, write_report
from trainer.history.record import remember
from trainer.history.store import config_digest
from trainer.utils.clock import now_utc
from trainer.utils.hydra_run import task_overrides
from trainer.utils.instantiate import instantiate_group
from trainer.utils.rich_utils import console, print_metrics_table

__all__ = ["data_config", "evaluate"]

log = logging.getLogger(__name__)


def data_config(cfg: DictConfig, meta: Mapping[str, Any]) -> DictConfig:
    """The checkpoint's data config, with the command line's ``data.<key>=`` applied; or, when
    the command line chose a data option (``data=folder``), the composed one."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = task_overrides()
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


def _device(cfg: DictConfig) -> torch.device:
    wanted = str(cfg.get("device") or "auto")
    if wanted == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(wanted)


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate ``cfg.ckpt_path`` as the config says; returns what metrics.json holds.

    Raises:
        GateFailed: after writing everything, when a gate bound fails.
    """
    started = now_utc()
    if not cfg.get("ckpt_path"):
        raise ConfigError("ckpt_path: required: python eval.py ckpt_path=PATH/TO/epoch_NNN.ckpt")
    ckpt_path = Path(cfg.ckpt_path).expanduser().resolve()
    model = load_model(ckpt_path)
    meta = dict(model.run_metadata)
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
        target_false_reject=float(cfg.operating_point.get("target_false_reject", 0.01)),
    )
    metrics = report.metrics
    checks, gate_result = gates.apply_gate(
        cfg.get("gate"), metrics
    )  # a gate naming an unknown metric fails here
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
    if cfg.get("report_html", True):  # after remember: the page's history holds this run
        history = (cfg.get("history") or {}).get("path")
        page = write_html(report, content, meta, out_dir, model, datamodule, history, split)
        console.print(f"Page: [bold]{page}[/bold]", soft_wrap=True)
    gates.print_checks(checks)
    gates.enforce(checks)
    return content
