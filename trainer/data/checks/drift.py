"""Does new data still fit the contract a model was trained with, or should it be retrained?

Two kinds of evidence, one verdict (``DriftReport.verdict``: "fits" or "retrain"):

- schema: a class the model does not know, an image mode or size outside what it was trained on,
  unreadable files;
- statistics: for each per-image feature (mean and std of R, G and B as the loader decodes
  them), a two-sample Kolmogorov-Smirnov test of the new images against the training reference
  in the contract. With m features, each test runs at alpha / m (Bonferroni), so the chance of a
  false alarm on data from the training distribution is at most alpha; a feature drifts when
  its p-value is below alpha / m and its KS distance is at least ``min_statistic``.

Usage (evaluation, serving)::

    from trainer.data.checks.drift import check_batch
    report = check_batch(contract, [pil_image, uint8_array, ...])
    if not report.fits: ...
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from trainer.data.checks.image_stats import FEATURES, image_to_rgb, rgb_stats
from trainer.data.checks.policy import DriftSettings, Policy
from trainer.data.checks.validation import inspect_all, walk_tree

TEST_NAME = "two-sample Kolmogorov-Smirnov per feature, Bonferroni-corrected"


@dataclass
class DriftReport:
    """The verdict and its reasons: schema ``problems``, ``warnings`` and one row per test."""

    images: int
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    tests: list[dict[str, Any]] = field(default_factory=list)
    test: str = TEST_NAME
    alpha: float = 0.01

    @property
    def drifted(self) -> list[str]:
        return [t["feature"] for t in self.tests if t["drift"]]

    @property
    def fits(self) -> bool:
        return not self.problems and not self.drifted

    @property
    def verdict(self) -> str:
        return "fits" if self.fits else "retrain"

    def summary(self) -> str:
        """One line a person can act on."""
        if self.fits:
            return f"fits: {self.images} images look like the training data"
        reasons = [*self.problems]
        if self.drifted:
            reasons.append(f"pixel statistics shifted ({', '.join(self.drifted)})")
        return f"retrain: {'; '.join(reasons)}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "summary": self.summary(),
            "images": self.images,
            "problems": self.problems,
            "warnings": self.warnings,
            "test": self.test,
            "alpha": self.alpha,
            "tests": self.tests,
        }


def ks_tests(
    reference: dict[str, Any], features: np.ndarray, settings: DriftSettings
) -> list[dict[str, Any]]:
    """One KS test per feature of ``features`` (n, m) against the contract's reference."""
    from scipy.stats import ks_2samp

    names = list(reference["features"])
    threshold = settings.alpha / len(names)
    rows = []
    for k, name in enumerate(names):
        ref = np.asarray(reference["values"][k], dtype=np.float64)
        new = features[:, k]
        result = ks_2samp(ref, new)
        shift = (new.mean() - ref.mean()) / (ref.std() or 1.0)
        rows.append(
            {
                "feature": name,
                "statistic": round(float(result.statistic), 4),
                "p_value": float(result.pvalue),
                "threshold": threshold,
                "shift_in_std": round(float(shift), 3),
                "drift": bool(
                    result.pvalue < threshold and result.statistic >= settings.min_statistic
                ),
            }
        )
    return rows


def compare(
    contract: dict[str, Any],
    modes: Sequence[str],
    sizes: Sequence[tuple[int, int]],
    features: np.ndarray,
    settings: DriftSettings | None = None,
    class_names: Sequence[str] | None = None,
) -> DriftReport:
    """The verdict for images described by their modes, (w, h) sizes and FEATURES rows."""
    settings = settings or DriftSettings()
    report = DriftReport(images=len(modes), alpha=settings.alpha)
    if class_names is not None:
        known = list(contract["class_names"])
        new = sorted(set(class_names) - set(known))
        missing = sorted(set(known) - set(class_names))
        if new:
            report.problems.append(f"classes the model does not know: {new}")
        if missing:
            report.warnings.append(f"classes without new images: {missing}")
    image = contract["image"]
    foreign = Counter(m for m in modes if m not in image["modes"])
    if foreign:
        report.problems.append(
            f"image modes {dict(foreign)} where training had {sorted(image['modes'])}"
        )
    (w0, w1), (h0, h1) = image["width"], image["height"]
    outside = Counter(f"{w}x{h}" for w, h in sizes if not (w0 <= w <= w1 and h0 <= h <= h1))
    if outside:
        trained = f"{w0}x{h0}" if (w0, h0) == (w1, h1) else f"{w0}-{w1} x {h0}-{h1}"
        report.problems.append(
            f"image sizes {dict(outside.most_common(3))} where training had {trained}"
        )
    if len(features) < settings.min_images:
        report.warnings.append(
            f"{len(features)} images: too few for the drift test (validation.drift.min_images="
            f"{settings.min_images}); only classes, modes and sizes were checked"
        )
    elif list(contract["reference"]["features"]) != list(FEATURES):
        report.warnings.append("the contract's features differ from this version's: no drift test")
    else:
        report.tests = ks_tests(contract["reference"], features, settings)
    return report


def check_batch(
    contract: dict[str, Any],
    images: Sequence[Image.Image | np.ndarray],
    settings: DriftSettings | None = None,
) -> DriftReport:
    """Check a batch of images (PIL images or uint8 arrays) against a contract.

    Args:
        contract: from ``trainer.data.checks.contract.load_contract`` or a checkpoint's metadata.
        images: PIL images of any mode, or uint8 arrays (h, w), (h, w, 3), (h, w, 4).
        settings: the test's alpha and thresholds (default ``DriftSettings()``).
    """
    modes, sizes, rows = [], [], []
    for image in images:
        mode, size, rgb = image_to_rgb(image)
        modes.append(mode)
        sizes.append(size)
        rows.append(rgb_stats(rgb)[3])
    features = np.array(rows, dtype=np.float64).reshape(len(rows), len(FEATURES))
    return compare(contract, modes, sizes, features, settings)


def check_dataset_against(
    contract: dict[str, Any], root: str | Path, policy: Policy | None = None
) -> DriftReport:
    """Check an image tree (either layout, every split together) against a contract."""
    policy = policy or Policy()
    tree = walk_tree(root)
    infos = inspect_all([e.path for e in tree.images], policy.workers)
    good = [i for i in infos if not i.error]
    features = np.array([i.features for i in good], dtype=np.float64).reshape(-1, len(FEATURES))
    report = compare(
        contract,
        [i.mode for i in good],
        [(i.width, i.height) for i in good],
        features,
        policy.drift,
        class_names=sorted({e.class_name for e in tree.images}),
    )
    bad = [i for i in infos if i.error]
    if bad:
        report.warnings.append(
            f"{len(bad)} unreadable files left out, e.g. {bad[0].path}: {bad[0].error}"
        )
    report.images = len(infos)
    return report
