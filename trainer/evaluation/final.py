"""The end of training: the best checkpoint evaluated by the same evaluator as ``eval.py``
(``trainer.evaluation.report``), its operating point written into it, the report (metrics.json,
report.html) and model card, the run history's row and the gate. Only rank zero does it; under
DDP the others have finished (the report's metrics gather nothing from them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from trainer.checkpoint.read import load_checkpoint
from trainer.evaluation import gate as gates
from trainer.evaluation.html_report import write_html
from trainer.evaluation.operating_point import write_to_checkpoint
from trainer.evaluation.report import evaluate_model, log_to, write_card, write_report
from trainer.history.record import remember
from trainer.history.store import config_digest
from trainer.utils.clock import now_utc

__all__ = ["finish_training"]


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
            target_false_reject=float(cfg.operating_point.get("target_false_reject", 0.01)),
        )
        if report.operating_point:
            op = {k: v for k, v in report.operating_point.items() if k != "source"}
            write_to_checkpoint(best, op)
            meta["operating_point"] = op
        metrics = {**report.metrics, **metrics}
    checks, gate_result = gates.apply_gate(cfg.get("gate"), metrics)
    if report is not None:
        summary = gates.summary(checks) if checks else None
        content = write_report(report, out_dir, {"checkpoint": best, "gate": summary})
        log_to(trainer.loggers, report, scalars=False)  # the test step logged the scalars
        write_card(report, meta, Path(best), config_digest(meta.get("config") or {}), out_dir)
    fingerprint = (meta.get("data") or {}).get("fingerprint")
    remember(cfg, "train", started, meta, metrics, best or None, gate_result, fingerprint)
    if report is not None and cfg.get("report_html", True):  # after remember: its history has it
        history = (cfg.get("history") or {}).get("path")
        write_html(report, content, meta, out_dir, model, datamodule, history, "test")
    gates.print_checks(checks)
    gates.enforce(checks)
    return metrics
