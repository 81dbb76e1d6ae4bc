"""Settings of the data checks: which findings fail, the thresholds, and the drift test.

The defaults here are those of ``configs/validation/default.yaml`` (a test keeps them equal), so
``train.py`` applies the same policy without composing that group.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from trainer.errors import ConfigError

SEVERITIES = ("fail", "warn", "off")

DEFAULT_SEVERITY = {
    "unreadable": "fail",  # zero-byte, truncated, corrupt, not an image
    "leakage": "fail",  # the same content, or a near copy (full scan), in two splits
    "empty_class": "fail",  # a class folder without images (the loader refuses it)
    "layout": "fail",  # the tree cannot be split as configured
    "type_mismatch": "warn",  # content is another image type than the extension says
    "mode": "warn",  # not RGB: what the loader's RGB conversion does to it
    "size_outlier": "warn",  # size or aspect ratio far from the median
    "size_spread": "warn",  # the largest image side is many times the smallest
    "duplicate": "warn",  # the same content twice within one split
    "near_duplicate": "warn",  # perceptual hashes within near_duplicate_bits, in one split
    "imbalance": "warn",  # largest / smallest class in train above max_imbalance
    "stray_file": "warn",  # a file without an image extension in a class folder
}


@dataclass
class DriftSettings:
    """The drift test: two-sample Kolmogorov-Smirnov per image feature, Bonferroni-corrected.

    Args:
        alpha: family-wise false-alarm rate; each of the m features is tested at alpha / m.
        min_statistic: a KS distance below this is never called drift (practical relevance).
        min_images: fewer new images than this: schema checks only, no statistical test.
        reference_size: per-image features of at most this many training images are kept.
    """

    alpha: float = 0.01
    min_statistic: float = 0.1
    min_images: int = 20
    reference_size: int = 1000


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
    max_imbalance: float = 10.0
    max_size_spread: float = 2.0
    outlier_area_ratio: float = 4.0
    outlier_aspect_ratio: float = 1.25
    near_duplicate_bits: int | None = 10
    workers: int | str = "auto"
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
