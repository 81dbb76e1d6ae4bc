"""``train(cfg)``: instantiate data, model, callbacks, loggers and Trainer from the config, fit,
test the best checkpoint, and return the metrics (a sweeper optimises ``cfg.optimized_metric``).
"""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor
from omegaconf import DictConfig, OmegaConf

from trainer.checkpoint.atomic_io import with_atomic_io
from trainer.checkpoint.finetune import check_finetune_options, load_parent
from trainer.checkpoint.read import check_resumable, checkpoint_metadata, kept_model_metrics
from trainer.checkpoint.resume import resolve_ckpt_path
from trainer.data.checks.anomaly_train import check_anomaly_training
from trainer.data.checks.contract import contract_before_training, run_policy
from trainer.data.image_folder import typical_side
from trainer.errors import ConfigError
from trainer.evaluation.final import finish_training
from trainer.models.backbone import check_name, input_size_for
from trainer.utils.device import default_precision, on_gpu
from trainer.utils.distributed import (
    apply_batch_rule,
    check_freeze_under_ddp,
    env_rank_is_zero,
    fit_sync_batchnorm,
    quiet_other_ranks,
    strategy_for,
)
from trainer.utils.instantiate import instantiate_group
from trainer.utils.lineage import lineage
from trainer.utils.loggers import tensorboard_logger
from trainer.utils.memory import check_training_fits
from trainer.utils.rich_utils import console, print_config_tree, print_metrics_table
from trainer.utils.wandb_logger import finish_run

log = logging.getLogger(__name__)

# Lightning's advice that does not apply here: the module normalises batches on purpose, and
# the loaders of in-memory data need no worker processes.
warnings.filterwarnings("ignore", message=".*overridden `on_after_batch_transfer`.*")
warnings.filterwarnings("ignore", message=".*does not have many workers.*")
# The sanity check's two validation batches may hold one class only: AUROC is undefined there.
warnings.filterwarnings("ignore", message=".*No (positive|negative) samples in targets.*")
# TensorBoard's graph is traced with torch.jit, which torch now calls deprecated.
warnings.filterwarnings("ignore", message=".*torch.jit.trace(_method)?` is deprecated.*")
# the same trace warns of every shape-dependent branch (PatchCore's empty bank before fitting)
warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\)`? is deprecated.*")


def build_trainer(
    cfg: DictConfig, callbacks: list[Any], loggers: list[Any], model: Any = None
) -> L.Trainer:
    trainer_cfg = fit_sync_batchnorm(OmegaConf.to_container(cfg.trainer, resolve=True))
    strategy = trainer_cfg.pop("strategy", "auto")
    if model is not None:  # a model without gradients runs DDP unwrapped
        strategy = strategy_for(strategy, model)
    accelerator = str(trainer_cfg.get("accelerator", "auto"))
    if trainer_cfg.get("precision") is None:
        trainer_cfg["precision"] = default_precision(accelerator)
    if trainer_cfg.get("benchmark") is None and not trainer_cfg.get("deterministic"):
        trainer_cfg["benchmark"] = on_gpu(accelerator)  # cudnn picks the fastest kernels
    plugins = with_atomic_io(list(hydra.utils.instantiate(trainer_cfg.pop("plugins", None) or [])))
    return hydra.utils.instantiate(
        trainer_cfg, callbacks=callbacks, logger=loggers, plugins=plugins, strategy=strategy
    )


def instantiate_model(cfg: DictConfig, **kwargs: Any) -> L.LightningModule:
    """``cfg.model`` instantiated; a key the model does not take (an experiment written for
    another kind of model sets it) is one line naming it and the experiment."""
    from hydra.errors import InstantiationException

    try:
        return hydra.utils.instantiate(cfg.model, **kwargs)
    except InstantiationException as err:
        key = re.search(r"unexpected keyword argument '(\w+)'", str(err))
        if key is None:
            raise
        from hydra.core.hydra_config import HydraConfig

        choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
        experiment = choices.get("experiment")
        raise ConfigError(
            f"model.{key.group(1)}: {cfg.model.get('_target_')} takes no such option"
            + (f" (set by experiment={experiment})" if experiment else "")
            + "; choose the experiment written for this model (model=patchcore: "
            "experiment=pcb_anomaly) or drop it with ~experiment"
        ) from err


def _log_once() -> None:
    """Lightning adds its own console handler; under Hydra's root handlers every line came twice."""
    if logging.getLogger().hasHandlers():
        logging.getLogger("lightning").handlers.clear()


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit and test as the config says; return every logged metric as a float."""
    _log_once()
    quiet_other_ranks()
    check_finetune_options(cfg)
    if cfg.get("print_config") and env_rank_is_zero():
        print_config_tree(cfg)
    L.seed_everything(cfg.seed, workers=True)
    torch.set_float32_matmul_precision("high")

    check_name(cfg.model.backbone)  # before minutes of data preparation
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.prepare_data()
    class_names = datamodule.class_names
    ckpt_path = resolve_ckpt_path(cfg)  # ckpt_path, or the run folder's newest (resume=auto)
    input_size = cfg.model.get("input_size")
    if input_size == "auto" and ckpt_path:  # a run continued keeps its input, whatever the data
        input_size = int(checkpoint_metadata(ckpt_path)["preprocessing"]["input_size"][-1])
        log.info("model.input_size=auto: %d px, the size of the run it resumes", input_size)
    elif input_size == "auto":  # from the training images, within the backbone's range
        side = typical_side(datamodule.scan.splits.get("train", []))
        input_size = input_size_for(cfg.model.backbone, side)
        log.info(
            "model.input_size=auto: training images of median side %s px: input %d px "
            "(model.input_size=N to choose)",
            side,
            input_size,
        )
    model = instantiate_model(
        cfg,
        input_size=input_size,
        class_names=class_names,
        good_class=cfg.data.get("good_class"),
        # weights come from the parent: no hub look-up
        **({"pretrained": False} if cfg.get("finetune_from") else {}),
    )
    check_anomaly_training(model, datamodule)  # defect images in a good-only training split
    if ckpt_path:  # before anything is written into the run folder
        check_resumable(ckpt_path, class_names, model, cfg.model.backbone)
    parent = None  # loaded before the summary: the parent's training images leave val and test
    if cfg.get("finetune_from"):
        reset = cfg.get("reset_head", False)
        parent = load_parent(model, cfg.finetune_from, reset_head=reset, datamodule=datamodule)
    data_summary = datamodule.summary()  # its fingerprint also goes into the data contract
    data_contract = contract_before_training(cfg, datamodule, data_summary["fingerprint"])
    order = datamodule.choose_order(run_policy(cfg).max_imbalance)  # data.sampler=auto
    datamodule.set_preprocessing(model.preprocessing)
    model.run_metadata = {
        "config": OmegaConf.to_container(cfg, resolve=True),
        "lineage": lineage(cfg.paths.root_dir),
        "data": {**data_summary, "sampler": order},
    }
    if data_contract:
        model.run_metadata["data_contract"] = data_contract
    if parent:
        model.run_metadata["parent_checkpoint"] = parent

    callbacks = instantiate_group(cfg.get("callbacks"))
    loggers = instantiate_group(cfg.get("logger"))
    if not loggers:  # nothing to monitor the learning rate into
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    trainer = build_trainer(cfg, callbacks, loggers, model)
    model.run_metadata["batch"] = apply_batch_rule(cfg, trainer, model)
    check_freeze_under_ddp(trainer, model)
    if cfg.get("train"):  # before the first batch: a step too big is killed with no message
        check_training_fits(trainer, model, int(cfg.data.batch_size))
    output_dir = Path(cfg.paths.output_dir)
    if trainer.is_global_zero:
        console.print(f"Run folder: [bold]{output_dir}[/bold]", soft_wrap=True)
        if tensorboard_logger(trainer):
            console.print(
                f"TensorBoard: [bold]tensorboard --logdir {output_dir}[/bold]", soft_wrap=True
            )

    if cfg.get("train"):
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    metrics = kept_model_metrics(trainer)  # the best checkpoint's epoch, not the last epoch

    if cfg.get("test"):
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if cfg.get("train") and not best and not trainer.fast_dev_run:
            log.warning("No best checkpoint was saved: testing the current weights.")
        trainer.test(
            model, datamodule=datamodule, ckpt_path=best or None, verbose=False, weights_only=True
        )
        test_metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if "test/" in k}
        metrics.update(test_metrics)
        if trainer.is_global_zero:
            print_metrics_table(test_metrics)

    _log_hparams(trainer, cfg, metrics)
    if trainer.is_global_zero and getattr(trainer.checkpoint_callback, "best_model_path", ""):
        best = trainer.checkpoint_callback.best_model_path
        console.print(f"Best checkpoint: [bold]{best}[/bold]", soft_wrap=True)
    try:  # operating point into the best checkpoint, report, model card, run history, gate
        return finish_training(cfg, trainer, model, datamodule, metrics)
    finally:
        finish_run()  # W&B's run: complete, and not continued by a sweep's next job


def _log_hparams(trainer: L.Trainer, cfg: DictConfig, metrics: dict[str, float]) -> None:
    """The hparams tab of TensorBoard: the config's knobs next to the final metrics."""
    tb = tensorboard_logger(trainer)
    if tb is None:
        return
    params = {
        "backbone": cfg.model.backbone,
        "input_size": str(cfg.model.input_size),
        "lr": (cfg.model.get("optimizer") or {}).get("lr"),  # an anomaly model has none
        "batch_size": cfg.data.batch_size,
        "global_batch_size": trainer.world_size
        * cfg.data.batch_size
        * (cfg.trainer.get("accumulate_grad_batches") or 1),
        "max_epochs": cfg.trainer.max_epochs,
        "pretrained": cfg.model.pretrained,
        "seed": cfg.seed,
    }
    final = {f"hparams/{k}": v for k, v in metrics.items() if k.startswith(("val/", "test/"))}
    tb.log_hyperparams(params, metrics=final)
