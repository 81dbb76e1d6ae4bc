"""Running as one of several processes: who is rank zero, the batch-size rule, DDP checks.

The batch-size rule (README, "Batch size under DDP"): ``data.batch_size`` is per device, so a
config keeps its memory footprint on any number of GPUs; the optimizer sees the global batch
``batch_size x devices x num_nodes x accumulate_grad_batches``. With ``scale_lr: true`` the
learning rate follows the linear scaling rule (Goyal et al. 2017, "Accurate, Large Minibatch
SGD"): ``lr x global_batch / reference_batch_size``, where ``reference_batch_size`` is the global
batch at which ``model.optimizer.lr`` was tuned. It is opt-in because AdamW with a warmup (our
default) is far less sensitive to the batch than SGD, and a silent lr change surprises people.

Rank is read from the environment before any framework starts, because Hydra sets up the run
folder and logging before Lightning exists: Lightning's re-launched DDP children get
``LOCAL_RANK``/``NODE_RANK``, ``srun`` tasks get ``SLURM_PROCID``, torchrun gives ``RANK``.
"""

from __future__ import annotations

import functools
import logging
import os
from typing import Any

log = logging.getLogger(__name__)

RANK_VARIABLES = ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK")


def env_rank_is_zero() -> bool:
    """True unless the environment says this process is not the global rank zero."""
    for name in RANK_VARIABLES:
        value = os.environ.get(name, "0")
        if value.isdigit() and int(value) != 0:
            return False
    return True


def hydra_overrides_for_rank(argv: list[str]) -> list[str]:
    """Extra Hydra overrides for a process that is not rank zero: no ``.hydra/`` of its own.

    ``srun python train.py ...`` starts every rank with the same command; only rank zero writes
    the composed config into the run folder. (Lightning's own DDP re-launch already passes this.)
    """
    if env_rank_is_zero() or any(a.startswith("hydra.output_subdir=") for a in argv):
        return []
    return ["hydra.output_subdir=null"]


def quiet_other_ranks() -> None:
    """Ranks other than zero log warnings and errors only: one copy of every info line."""
    if not env_rank_is_zero():
        logging.getLogger().setLevel(logging.WARNING)
        for name in ("lightning", "lightning.pytorch", "trainer"):
            logging.getLogger(name).setLevel(logging.WARNING)


def fit_sync_batchnorm(trainer_cfg: dict[str, Any]) -> dict[str, Any]:
    """Drop ``sync_batchnorm`` off the GPU: PyTorch's SyncBatchNorm only works with CUDA modules."""
    if not trainer_cfg.get("sync_batchnorm"):
        return trainer_cfg
    from trainer.utils.device import on_gpu

    if not on_gpu(str(trainer_cfg.get("accelerator", "auto"))):
        log.info("sync_batchnorm is GPU-only: batch norm keeps per-process statistics on the CPU")
        trainer_cfg = {**trainer_cfg, "sync_batchnorm": False}
    return trainer_cfg


def apply_batch_rule(cfg: Any, trainer: Any, model: Any) -> dict[str, Any]:
    """Log the per-device and global batch; scale the model's lr when ``cfg.scale_lr``.

    Args:
        cfg: the composed config (``data.batch_size``, ``scale_lr``, ``reference_batch_size``).
        trainer: the Lightning Trainer (its ``world_size`` counts devices x nodes).
        model: the LightningModule whose ``optimizer_factory`` is a partial with ``lr``.

    Returns:
        What was decided, for the checkpoint's metadata and TensorBoard's hparams.
    """
    per_device = int(cfg.data.batch_size)
    accumulate = int(cfg.trainer.get("accumulate_grad_batches") or 1)
    world = int(trainer.world_size)
    global_batch = per_device * world * accumulate
    rule = {
        "per_device_batch_size": per_device,
        "world_size": world,
        "accumulate_grad_batches": accumulate,
        "global_batch_size": global_batch,
    }
    factory = getattr(model, "optimizer_factory", None)
    base_lr = factory.keywords.get("lr") if isinstance(factory, functools.partial) else None
    if cfg.get("scale_lr") and base_lr is not None:
        reference = int(cfg.get("reference_batch_size") or 0)
        if reference < 1:
            from trainer.errors import ConfigError

            raise ConfigError(
                f"reference_batch_size: {reference} must be a positive batch size "
                "(the global batch at which model.optimizer.lr was tuned)"
            )
        lr = base_lr * global_batch / reference
        model.optimizer_factory = functools.partial(
            factory.func, *factory.args, **{**factory.keywords, "lr": lr}
        )
        rule.update(base_lr=base_lr, lr=lr, reference_batch_size=reference)
        explain = f"lr {base_lr:g} x {global_batch}/{reference} = {lr:g} (scale_lr=true)"
    else:
        rule.update(lr=base_lr)
        explain = f"lr {base_lr:g} (not scaled; scale_lr=false)" if base_lr else "lr as configured"
    log.info(
        "Batch: %d per device x %d processes x %d accumulation = global batch %d; %s",
        per_device,
        world,
        accumulate,
        global_batch,
        explain,
    )
    return rule


def check_freeze_under_ddp(trainer: Any, model: Any) -> None:
    """Refuse DDP without ``find_unused_parameters`` when the backbone will be frozen.

    BackboneFreeze switches ``requires_grad`` off after DDP has wrapped the model; DDP then
    waits for gradients that never come and fails at the next step with an obscure message.
    Freezing before the wrap is no cure: DDP would then never synchronise the backbone once it
    thaws. ``find_unused_parameters=True`` is what lets DDP skip the frozen weights.
    """
    from lightning.pytorch.strategies import DDPStrategy

    from trainer.errors import ConfigError

    strategy = trainer.strategy
    if not isinstance(strategy, DDPStrategy) or trainer.world_size < 2:
        return
    freezes = bool(getattr(model, "pretrained_loaded", False)) and int(
        model.hparams.get("freeze_backbone_epochs", 0) or 0
    )
    if freezes and not strategy._ddp_kwargs.get("find_unused_parameters", False):
        raise ConfigError(
            "trainer.strategy: the backbone is frozen for the first "
            f"{model.hparams.freeze_backbone_epochs} epoch(s), which plain DDP cannot do; use "
            "trainer.strategy=ddp_find_unused_parameters_true (the trainer=ddp default) or "
            "model.freeze_backbone_epochs=0"
        )


def strategy_for(strategy: Any, model: Any) -> Any:
    """``trainer.strategy`` for ``model``: a DDP strategy name becomes :func:`no_gradient_ddp`
    when the model has no trainable parameter (a memory bank fitted without gradients), which
    PyTorch's DistributedDataParallel refuses to wrap; anything else is returned as it is."""
    trainable = any(p.requires_grad for p in model.parameters())
    if trainable or not (isinstance(strategy, str) and strategy.startswith("ddp")):
        return strategy
    return no_gradient_ddp(start_method="spawn" if "spawn" in strategy else "popen")


def no_gradient_ddp(**kwargs: Any) -> Any:
    """Lightning's DDP strategy (processes, distributed samplers, all_gather, barriers) without the
    DistributedDataParallel wrapper: with no gradient there is nothing for it to synchronise."""
    from lightning.pytorch.strategies import DDPStrategy

    class NoGradientDDP(DDPStrategy):
        def configure_ddp(self) -> None:
            log.info("DDP: the model has no trainable parameter: processes are not wrapped")

    return NoGradientDDP(**kwargs)
