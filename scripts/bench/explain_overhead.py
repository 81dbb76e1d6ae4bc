"""What the explanation callbacks add to a training run, measured inside their own hooks.

Runs ``trainer.validate`` on a checkpoint's validation split with the three callbacks at their
default settings (configs/callbacks/<name>.yaml), then the end-of-training hooks, and reports
the seconds spent in each callback's hooks. Per-epoch work (WorstMistakes) is multiplied by
``--epochs`` (8 in the default experiment) for the total a default ``python train.py`` pays.

Example:
    python scripts/bench/explain_overhead.py --ckpt outputs/train/runs/<time>/checkpoints/last.ckpt
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

try:
    import trainer  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

HOOKS = (
    "on_validation_epoch_start",
    "on_validation_batch_end",
    "on_validation_epoch_end",
    "on_train_end",
)


def timed(callback: object, totals: dict[str, float]) -> object:
    """Wrap ``callback``'s hooks so the seconds spent in them add up in ``totals``."""
    for name in HOOKS:
        hook = getattr(callback, name)

        def wrapper(*args: object, _hook=hook, **kwargs: object) -> object:  # noqa: ANN001
            start = time.perf_counter()
            try:
                return _hook(*args, **kwargs)
            finally:
                totals[type(callback).__name__] += time.perf_counter() - start

        setattr(callback, name, wrapper)
    return callback


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", required=True, help="a checkpoint written by train.py")
    p.add_argument("--epochs", type=int, default=8, help="validation epochs of the run to price")
    args = p.parse_args(argv)

    import lightning as L
    from lightning.pytorch.loggers import TensorBoardLogger

    from trainer.callbacks.embedding_projector import EmbeddingProjector
    from trainer.callbacks.explain_images import ExplainImages
    from trainer.callbacks.worst_mistakes import WorstMistakes
    from trainer.checkpoint.read import load_classifier
    from trainer.data.datamodule import ImageFolderDataModule
    from trainer.utils.entry import run_reporting_errors

    model = run_reporting_errors(load_classifier, args.ckpt)
    dm = ImageFolderDataModule(model.run_metadata["data"]["root"], cache_in_memory=True)
    dm.set_preprocessing(model.preprocessing)
    totals: dict[str, float] = defaultdict(float)
    callbacks = [timed(c, totals) for c in (ExplainImages(), WorstMistakes(), EmbeddingProjector())]
    with tempfile.TemporaryDirectory() as tmp:
        trainer = L.Trainer(
            accelerator="cpu",
            logger=TensorBoardLogger(tmp, name="", version=""),
            callbacks=callbacks,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        start = time.perf_counter()
        trainer.validate(model, datamodule=dm, verbose=False)
        validation = time.perf_counter() - start
        for c in callbacks:
            c.on_train_end(trainer, model)
    per_epoch = totals["WorstMistakes"]
    at_end = totals["ExplainImages"] + totals["EmbeddingProjector"]
    print(f"validation of {len(dm.datasets['val'])} images: {validation:.2f} s (with callbacks)")
    for name, seconds in totals.items():
        print(f"  {name:20s} {seconds:6.2f} s")
    print(
        f"added to a {args.epochs}-epoch run: {args.epochs * per_epoch + at_end:.1f} s "
        f"({per_epoch:.2f} s per validation epoch, {at_end:.2f} s at the end)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
