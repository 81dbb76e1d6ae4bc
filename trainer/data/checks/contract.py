"""The data contract: what a model was trained on, written before training, read to check new data.

``check_before_training`` runs the fast checks of ``trainer.data.checks.validation`` on the splits the
data module will load (every file read once: hash, decode, RGB statistics; no perceptual hash),
applies ``data.validate`` (strict: failing findings stop the run; warn: they are logged; off:
nothing runs and no contract is written) and returns the contract::

    {"class_names", "counts", "image": {"modes", "loader_mode", "channels", "width", "height"},
     "pixel_stats": {"mean", "std"}, "reference": {"features", "values"}, "fingerprint", ...}

``load_contract`` reads one from a run folder, a checkpoint or a JSON file.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from trainer.data.checks.image_stats import FEATURES
from trainer.data.checks.policy import Policy
from trainer.data.checks.validation import Tree, ValidationReport, analyse, entries_of
from trainer.errors import ConfigError, DataError
from trainer.utils.atomic import atomic_write

log = logging.getLogger(__name__)

CONTRACT_FILE = "data_contract.json"
CONTRACT_VERSION = 1
VALIDATE_MODES = ("strict", "warn", "off")


def build_contract(
    report: ValidationReport, fingerprint: str, reference_size: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """The contract of the training split of ``report`` (which must hold its file infos)."""
    train = [i for e, i in report.infos if e.split == "train" and not i.error]
    if not train:
        raise DataError(f"data.root: '{report.root}' has no readable training images")
    pixels = sum(i.pixels for i in train)
    sums = np.sum([i.sums for i in train], axis=0)
    sumsq = np.sum([i.sumsq for i in train], axis=0)
    mean = sums / pixels
    std = np.sqrt(np.maximum(sumsq / pixels - mean * mean, 0.0))
    features = np.array([i.features for i in train], dtype=np.float64)
    if len(features) > reference_size:  # a fixed random subset: the reference sample of the test
        keep = np.random.default_rng(seed).choice(len(features), reference_size, replace=False)
        features = features[np.sort(keep)]
    widths, heights = [i.width for i in train], [i.height for i in train]
    return {
        "version": CONTRACT_VERSION,
        "class_names": list(report.summary["class_names"]),
        "counts": report.summary["counts"],
        "image": {
            "modes": dict(Counter(i.mode for i in train)),
            "formats": dict(Counter(i.format for i in train)),
            "loader_mode": "RGB",
            "channels": 3,
            "width": [min(widths), max(widths)],
            "height": [min(heights), max(heights)],
        },
        "pixel_stats": {
            "split": "train",
            "space": "RGB uint8 (0-255), as trainer.data.dataset.load_image decodes",
            "mean": [round(float(v), 4) for v in mean],
            "std": [round(float(v), 4) for v in std],
        },
        "reference": {
            "features": list(FEATURES),
            "values": np.round(features, 3).T.tolist(),  # one list per feature
        },
        "fingerprint": fingerprint,
    }


def _check_mode(mode: str) -> str:
    mode = str(mode).lower()
    if mode not in VALIDATE_MODES:
        raise ConfigError(f"data.validate: '{mode}' is not one of {', '.join(VALIDATE_MODES)}")
    return mode


def check_before_training(
    datamodule: Any, mode: str, fingerprint: str, policy: Policy | None = None
) -> dict[str, Any] | None:
    """Run the fast checks on what ``datamodule`` will load; return the contract (None if off).

    Args:
        datamodule: an ``ImageFolderDataModule`` after ``prepare_data``.
        mode: strict (failing findings raise DataError) | warn (logged) | off.
        fingerprint: ``datamodule.fingerprint()``, computed once by the caller.
        policy: what fails (default ``Policy()``, as configs/validation/default.yaml).
    """
    if _check_mode(mode) == "off":
        return None
    policy = policy or Policy()
    scan = datamodule.scan
    tree = Tree(scan.root, scan.class_names, entries_of(scan))
    report = analyse(tree, policy, perceptual=False)
    failing = [f for f in report.findings if f.severity == "fail"]
    if failing and mode == "strict":
        first = failing[0]
        raise DataError(
            f"data.validate=strict: {len(failing)} problem(s) in '{scan.root}', first: "
            f"{first.path or first.check}: {first.reason}; see `python scripts/validate_data.py "
            f"data.root={scan.root}`, or set data.validate=warn"
        )
    for finding in report.findings[:10]:
        log.warning("data check (%s) %s: %s", finding.check, finding.path or "-", finding.reason)
    if len(report.findings) > 10:
        log.warning("data check: %d more findings not shown", len(report.findings) - 10)
    contract = build_contract(report, fingerprint, policy.drift.reference_size)
    contract["validation"] = {
        "mode": mode,
        "fail": report.summary["fail"],
        "warn": report.summary["warn"],
        "seconds": report.summary["seconds"],
    }
    return contract


def write_contract(contract: dict[str, Any], folder: str | Path) -> Path:
    """Write ``data_contract.json`` into ``folder`` (a run folder; a resumed run rewrites it)."""
    path = Path(folder) / CONTRACT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, json.dumps(contract, indent=1))


def load_contract(source: str | Path) -> dict[str, Any]:
    """The contract in a run folder, a checkpoint (``.ckpt``) or a ``data_contract.json``.

    Raises:
        DataError: nothing there, or no contract in it.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        candidates = [path / CONTRACT_FILE, *sorted(path.glob(f"*/{CONTRACT_FILE}"))]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise DataError(
                f"against: folder '{path}' holds no {CONTRACT_FILE}; give a run folder of a "
                "training with data.validate=warn|strict, a checkpoint or a contract file"
            )
        path = found
    if not path.is_file():
        raise DataError(f"against: '{path}' does not exist")
    if path.suffix == ".ckpt":
        from trainer.checkpoint.read import checkpoint_metadata

        contract = checkpoint_metadata(path).get("data_contract")
        if not contract:
            raise DataError(
                f"against: checkpoint '{path}' holds no data contract (trained with "
                "data.validate=off or before contracts existed)"
            )
        return contract
    try:
        contract = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise DataError(f"against: '{path}' is not a JSON contract ({err})") from err
    if not isinstance(contract, dict) or "reference" not in contract:
        raise DataError(f"against: '{path}' is not a data contract (no 'reference' key)")
    return contract


def run_policy(cfg: Any) -> Policy:
    """The run's data-check policy: ``cfg.validation`` when composed, else the defaults."""
    from omegaconf import OmegaConf

    policy_cfg = cfg.get("validation")
    return Policy.from_config(
        OmegaConf.to_container(policy_cfg, resolve=True) if policy_cfg else None
    )


def contract_before_training(cfg: Any, datamodule: Any, fingerprint: str) -> dict[str, Any] | None:
    """What ``train.py`` calls: check as ``cfg.data.validate`` says, write the run's contract.

    The policy is ``cfg.validation`` when the run composes one (``+validation=default``), else
    the defaults; only global rank zero writes ``data_contract.json`` into the run folder.
    """
    from trainer.utils.distributed import env_rank_is_zero

    contract = check_before_training(
        datamodule, cfg.data.get("validate", "warn"), fingerprint, run_policy(cfg)
    )
    if contract is not None and env_rank_is_zero():
        path = write_contract(contract, cfg.paths.output_dir)
        log.info("Data contract: %s (%.1f s of checks)", path, contract["validation"]["seconds"])
    return contract
