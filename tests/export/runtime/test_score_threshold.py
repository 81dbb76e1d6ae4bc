"""score.py decides pass/fail as the operating point was chosen: ``1 - p(good) >= threshold`` in
float32, the precision of the ONNX model's probabilities and of training's scores."""

from __future__ import annotations

import numpy as np
import torch

from trainer.evaluation.operating_point import rates_at
from trainer.export.runtime import score as score_template

CLASSES = ["good", "missing", "misplaced"]


def _model(threshold: float) -> score_template.Model:
    """A ``Model`` with only what ``decide`` reads (no bundle, no ONNX session)."""
    model = score_template.Model.__new__(score_template.Model)
    model.class_names = CLASSES
    model.operating_point = {"rule": "threshold", "good_class": "good", "threshold": threshold}
    return model


def test_a_score_on_the_threshold_is_a_defect() -> None:
    threshold = np.float32(0.8)  # thresholds are float32 scores of the validation split
    p_good = (np.float32(1) - threshold) + np.float32(2.0**-26)  # a float32 in [0.125, 0.25)
    assert np.float32(1) - p_good == threshold  # float32, as training computes the score
    assert 1.0 - float(p_good) < float(threshold)  # float64 lands just below: a "pass"
    probs = np.array([p_good, np.float32(1) - p_good, 0], dtype=np.float32)

    score, passed = _model(float(threshold)).decide(probs)
    assert passed is False and score == float(threshold)
    torch_score = 1 - torch.from_numpy(probs[None])[:, 0]  # trainer.metrics.summary.defect_scores
    assert rates_at(torch_score, torch.tensor([True]), float(threshold))["defect_recall"] == 1.0


def test_scores_either_side_of_the_threshold() -> None:
    model = _model(0.5)
    assert model.decide(np.array([0.6, 0.3, 0.1], dtype=np.float32)) == (
        float(np.float32(1) - np.float32(0.6)),
        True,
    )
    assert model.decide(np.array([0.5, 0.5, 0.0], dtype=np.float32)) == (0.5, False)
    assert model.decide(np.array([0.2, 0.3, 0.5], dtype=np.float32))[1] is False
    assert model.decide(np.array([np.nan, 0.5, 0.5], dtype=np.float32))[1] is False  # never pass
