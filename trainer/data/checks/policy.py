"""Settings of the data checks: which findings fail, the thresholds, and the drift test.

The values live in one place, ``configs/validation/default.yaml`` (each key commented there):
the dataclasses below name the fields and read their defaults from that file, so ``train.py``,
``scripts/validate_data.py`` and library calls (``Policy()``) apply the same policy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from trainer.errors import ConfigError

SEVERITIES = ("fail", "warn", "off")
DEFAULTS_FILE = Path(__file__).resolve().parents[3] / "configs" / "validation" / "default.yaml"


def _defaults() -> dict[str, Any]:
    import yaml

    try:
        return yaml.safe_load(DEFAULTS_FILE.read_text())
    except OSError as err:
        raise ConfigError(
            f"validation: '{DEFAULTS_FILE}' is missing; the data checks read their defaults "
            "from the repository's configs/ (run from a clone of the project)"
        ) from err


DEFAULTS = _defaults()
DEFAULT_SEVERITY: dict[str, str] = dict(DEFAULTS["severity"])  # check -> fail | warn | off


@dataclass
class DriftSettings:
    """The drift test: two-sample Kolmogorov-Smirnov per image feature, Bonferroni-corrected.

    Args:
        alpha: family-wise false-alarm rate; each of the m features is tested at alpha / m.
        min_statistic: a KS distance below this is never called drift (practical relevance).
        min_images: fewer new images than this: schema checks only, no statistical test.
        reference_size: per-image features of at most this many training images are kept.
    """

    alpha: float = DEFAULTS["drift"]["alpha"]
    min_statistic: float = DEFAULTS["drift"]["min_statistic"]
    min_images: int = DEFAULTS["drift"]["min_images"]
    reference_size: int = DEFAULTS["drift"]["reference_size"]


@dataclass
class Policy:
    """Which findings fail, and the thresholds that make a finding.

    Args:
        severity: check name -> fail | warn | off.
        max_imbalance: train imbalance (largest / smallest class) above this is a finding.
        max_size_spread: largest / smallest image side above this is a finding.
        outlier_area_ratio: an image whose pixel count is this many times off the median.
        outlier_aspect_ratio: an image whose aspect ratio is this many times off the median.
        near_duplicate_bits: perceptual hashes at most this many bits apart (of 256) are
            near-duplicates (``near_duplicate`` in one split, ``leakage`` across splits); null
            skips the perceptual hash.
        workers: processes for decoding ("auto": every CPU up to 4 from 2,000 files on).
        drift: see DriftSettings.
    """

    severity: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_SEVERITY))
    max_imbalance: float = DEFAULTS["max_imbalance"]
    max_size_spread: float = DEFAULTS["max_size_spread"]
    outlier_area_ratio: float = DEFAULTS["outlier_area_ratio"]
    outlier_aspect_ratio: float = DEFAULTS["outlier_aspect_ratio"]
    near_duplicate_bits: int | None = DEFAULTS["near_duplicate_bits"]
    workers: int | str = DEFAULTS["workers"]
    drift: DriftSettings = field(default_factory=DriftSettings)

    def level(self, check: str) -> str:
        return self.severity.get(check, "warn")

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> Policy:
        """A Policy from a ``validation`` config (missing keys keep their defaults)."""
        cfg = dict(cfg or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise ConfigError(f"validation: unknown keys {unknown}; known: {sorted(known)}")
        severity = {**DEFAULT_SEVERITY, **dict(cfg.pop("severity", None) or {})}
        for check, level in severity.items():
            if check not in DEFAULT_SEVERITY:
                raise ConfigError(
                    f"validation.severity.{check}: unknown check; known: {list(DEFAULT_SEVERITY)}"
                )
            if level not in SEVERITIES:
                raise ConfigError(
                    f"validation.severity.{check}: '{level}' is not one of {SEVERITIES}"
                )
        drift = dict(cfg.pop("drift", None) or {})
        drift_known = {f.name for f in fields(DriftSettings)}
        if set(drift) - drift_known:
            raise ConfigError(
                f"validation.drift: unknown keys {sorted(set(drift) - drift_known)}; "
                f"known: {sorted(drift_known)}"
            )
        settings = DriftSettings(**drift)
        if not 0 < settings.alpha < 1:
            raise ConfigError(f"validation.drift.alpha: {settings.alpha} is not in (0, 1)")
        return cls(severity=severity, drift=settings, **cfg)
