"""The histogram summary counted in torch equals NumPy's, and TensorBoard reads it back."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from trainer.callbacks.weight_histograms import WeightHistograms, histogram_summary
from trainer.errors import ConfigError


def test_summary_matches_numpy() -> None:
    values = torch.randn(3, 50, generator=torch.Generator().manual_seed(0))
    summary = histogram_summary(values, bins=16)
    flat = values.numpy().ravel().astype(np.float64)
    counts, edges = np.histogram(flat, bins=16, range=(flat.min(), flat.max()))
    assert summary["bucket_counts"] == counts.tolist()
    np.testing.assert_allclose(summary["bucket_limits"], edges[1:], rtol=1e-6)
    assert summary["num"] == 150
    np.testing.assert_allclose(summary["sum"], flat.sum(), rtol=1e-5)
    np.testing.assert_allclose(summary["sum_squares"], np.square(flat).sum(), rtol=1e-5)
    assert (summary["min"], summary["max"]) == (float(flat.min()), float(flat.max()))


def test_constant_tensor_is_one_bucket_and_tensorboard_reads_it(tmp_path) -> None:
    summary = histogram_summary(torch.full((7,), 0.5), bins=8)
    assert sum(summary["bucket_counts"]) == 7
    with SummaryWriter(tmp_path) as writer:
        writer.add_histogram_raw("weights/w", **summary, global_step=3)
    acc = EventAccumulator(str(tmp_path), size_guidance={"histograms": 0}).Reload()
    (event,) = acc.Histograms("weights/w")
    assert event.step == 3 and event.histogram_value.num == 7


def test_non_finite_weights_are_left_out_not_fatal() -> None:
    summary = histogram_summary(torch.tensor([1.0, float("nan"), 3.0, float("inf")]), bins=2)
    assert summary["num"] == 2 and summary["bucket_counts"] == [1.0, 1.0]
    assert histogram_summary(torch.tensor([float("nan")]), bins=4) is None


def test_bins_below_one_is_one_line_naming_the_option() -> None:
    with pytest.raises(ConfigError, match="callbacks.weight_histograms.bins=0"):
        WeightHistograms(bins=0)
