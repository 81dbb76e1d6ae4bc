"""PatchCore's parts against references computed another way: brute-force distances
(``torch.cdist``), a plain greedy k-center, scikit-learn's AUROC, and counts by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from trainer.errors import ConfigError
from trainer.evaluation.anomaly import (
    anomaly_evaluation,
    anomaly_operating_point,
    threshold_for_false_reject,
)
from trainer.metrics.anomaly import AnomalyMetrics
from trainer.models.coreset import greedy_coreset
from trainer.models.knn import nearest, neighbour_table
from trainer.models.patchcore import PatchCore


def test_nearest_matches_cdist_in_any_chunking() -> None:
    g = torch.Generator().manual_seed(0)
    query, bank = torch.randn(37, 16, generator=g), torch.randn(53, 16, generator=g)
    ref = torch.cdist(query.double(), bank.double())
    for chunk in (1, 100, 1 << 20):
        dist, index = nearest(query, bank, chunk_elements=chunk)
        assert torch.equal(index, ref.argmin(1))
        assert torch.allclose(dist.double(), ref.min(1).values, atol=1e-4)


def test_neighbour_table_lists_itself_then_the_nearest() -> None:
    bank = torch.randn(40, 8, generator=torch.Generator().manual_seed(1))
    table = neighbour_table(bank, 5, chunk_elements=64)
    ref = torch.cdist(bank.double(), bank.double()).argsort(1)[:, :5]
    assert torch.equal(table[:, 0], torch.arange(40))
    assert torch.equal(table, ref)


def _plain_greedy(points: torch.Tensor, n: int, first: int) -> list[int]:
    chosen = [first]
    for _ in range(n - 1):
        d = torch.cdist(points.double(), points[chosen].double()).min(1).values
        chosen.append(int(d.argmax()))
    return chosen


def test_coreset_is_greedy_k_center() -> None:
    points = torch.randn(300, 6, generator=torch.Generator().manual_seed(2))
    chosen = greedy_coreset(points, 20, projection_dim=None, seed=3)
    assert chosen.tolist() == _plain_greedy(points, 20, int(chosen[0]))
    assert len(set(chosen.tolist())) == 20
    assert torch.equal(chosen, greedy_coreset(points, 20, projection_dim=None, seed=3))
    assert torch.equal(greedy_coreset(points, 500), torch.arange(300))


def test_threshold_rejects_the_affordable_share_of_good_images() -> None:
    good = torch.arange(200, dtype=torch.float32)  # 0 .. 199
    op = threshold_for_false_reject(good, 0.01)  # 2 of 200 may be flagged: 198 and 199
    assert 197 < op["threshold"] < 198
    assert int((good >= op["threshold"]).sum()) == 2
    assert op["val_false_reject"] == 0.01
    above_all = threshold_for_false_reject(good, 0.0)
    assert above_all["threshold"] > 199 and int((good >= above_all["threshold"]).sum()) == 0
    with pytest.raises(ConfigError, match="target_false_reject"):
        threshold_for_false_reject(good, 1.5)


def test_operating_point_uses_recall_when_val_has_defects() -> None:
    score = torch.tensor([0.1, 0.2, 0.3, 0.9, 0.8, 0.25])
    is_defect = torch.tensor([0, 0, 0, 1, 1, 1])
    op = anomaly_operating_point(score, is_defect, 1.0, 0.01, "good")
    assert op["rule"] == "target_recall" and 0.2 < op["threshold"] <= 0.25
    op = anomaly_operating_point(score[:3], is_defect[:3], 1.0, 0.0, "good")
    assert op["rule"] == "target_false_reject" and op["threshold"] > 0.3


def test_anomaly_metrics_match_scikit_learn() -> None:
    g = torch.Generator().manual_seed(4)
    names = ["bridge", "good", "missing"]
    target = torch.randint(0, 3, (120,), generator=g)
    scores = torch.rand(120, generator=g) + 0.3 * (target != 1)
    values = AnomalyMetrics(names, "good", sync=False)
    values.update(scores, target)
    got = values.compute("test")
    assert got["test/auroc_pass_fail"] == pytest.approx(
        roc_auc_score((target != 1).numpy(), scores.numpy()), abs=1e-6
    )
    for kind, index in (("bridge", 0), ("missing", 2)):
        mask = (target == 1) | (target == index)
        want = roc_auc_score((target[mask] == index).numpy(), scores[mask].numpy())
        assert got[f"test/auroc_{kind}"] == pytest.approx(want, abs=1e-6)


def test_evaluation_counts_at_the_threshold_by_hand() -> None:
    scores = torch.tensor([0.1, 0.6, 0.2, 0.7, 0.3, 0.9])
    target = torch.tensor([1, 1, 0, 0, 0, 1])  # class 1 = good
    ev = anomaly_evaluation(scores, target, ["defect", "good"], "good", "test", 0.5)
    # good: 0.1 pass, 0.6 flagged, 0.9 flagged; defects: 0.2 missed, 0.7 caught, 0.3 missed
    assert ev.confusion.tolist() == [[1, 2], [2, 1]]
    assert ev.scalars["test/acc_pass_fail"] == pytest.approx(2 / 6)
    assert ev.scalars["test/f1_pass_fail"] == pytest.approx(2 * 1 / (2 * 1 + 2 + 2))


GOOD = torch.randn(6, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def fit(**kwargs: float) -> PatchCore:
    torch.manual_seed(0)
    model = PatchCore("resnet10t", ["defect", "good"], pretrained=False, input_size=64, **kwargs)
    model.eval()
    model.fit_images(GOOD)
    return model


@pytest.fixture(scope="module")
def fitted() -> PatchCore:
    return fit()


def test_position_weight_compares_patches_at_their_place() -> None:
    """position_weight=2: each patch feature gets its (row, column) in [0, 1] times 2 x the
    median distance of the training features (scipy's pdist), in the bank and in the query."""
    from scipy.spatial.distance import pdist

    model = fit(position_weight=2.0, coreset_fraction=1.0, num_neighbours=1)
    with torch.no_grad():
        features, (h, w) = model.patch_features(GOOD)
    median = float(np.median(pdist(features.reshape(-1, model.feature_dim).double().numpy())))
    assert float(model.position_scale) == pytest.approx(2 * median, rel=1e-4)
    assert model.memory_bank.shape == (6 * h * w, model.feature_dim + 2)
    grid = np.stack(np.meshgrid(np.arange(h) / (h - 1), np.arange(w) / (w - 1), indexing="ij"), -1)
    placed = np.concatenate(
        [
            features.double().numpy(),
            np.broadcast_to(grid.reshape(1, h * w, 2) * 2 * median, (6, h * w, 2)),
        ],
        -1,
    )
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        scores, _ = model(x)
        query, _ = model.patch_features(x)
    query = np.concatenate(
        [
            query.double().numpy(),
            np.broadcast_to(grid.reshape(1, h * w, 2) * 2 * median, (2, h * w, 2)),
        ],
        -1,
    )
    bank = placed.reshape(-1, placed.shape[-1])
    for i in range(2):
        d = np.sqrt(((query[i][:, None] - bank[None]) ** 2).sum(-1)).min(1)
        assert float(scores[i]) == pytest.approx(d.max(), rel=1e-4)


def test_score_is_the_reweighted_largest_patch_distance(fitted: PatchCore) -> None:
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        scores, maps = fitted(x)
        features, (h, w) = fitted.patch_features(x)
    bank = fitted.memory_bank.double()
    for i in range(3):
        d = torch.cdist(features[i].double(), bank)  # (patches, bank)
        patch = d.min(1).values
        worst = int(patch.argmax())
        m_star = int(d[worst].argmin())
        # eq. 7: the worst patch against m* and m*'s nearest neighbours in the bank (m* first)
        support = torch.cdist(bank[m_star : m_star + 1], bank)[0].argsort()[:9]
        dist = torch.cdist(features[i, worst : worst + 1].double(), bank[support])[0]
        weight = 1 - dist.softmax(0)[0]
        assert float(scores[i]) == pytest.approx(float(patch.max() * weight), rel=1e-4)
    assert maps.shape == (3, 1, 64, 64)


def test_bank_travels_in_the_state_dict(fitted: PatchCore) -> None:
    other = PatchCore("resnet10t", ["defect", "good"], pretrained=False, input_size=64)
    other.load_state_dict(fitted.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(other.eval()(x)[0], fitted(x)[0])


def test_bad_options_are_one_line() -> None:
    with pytest.raises(ConfigError, match="model.coreset_fraction"):
        PatchCore("resnet10t", ["defect", "good"], pretrained=False, coreset_fraction=0)
    with pytest.raises(ConfigError, match="model.layers"):
        PatchCore("resnet10t", ["defect", "good"], pretrained=False, layers=[7])
    with pytest.raises(ConfigError, match="good_class"):
        PatchCore("resnet10t", ["a", "b"], pretrained=False)


def test_a_positional_model_exports_with_any_batch(tmp_path) -> None:
    """The position grid follows the batch in the ONNX graph (not the export's example batch)."""
    import onnxruntime as ort

    from trainer.export.onnx_export import deployable, export_onnx

    model = fit(position_weight=2.0, coreset_fraction=0.5)
    export_onnx(deployable(model), [64, 64], tmp_path / "m.onnx")
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        images = np.random.default_rng(batch).integers(0, 256, (batch, 3, 64, 64), np.uint8)
        scores = session.run(["anomaly_score"], {"image": images})[0]
        with torch.no_grad():
            expected = deployable(model)(torch.from_numpy(images))[0].numpy()
        np.testing.assert_allclose(scores, expected, rtol=1e-4)


def test_a_fit_saved_mid_epoch_resumes_to_the_same_bank() -> None:
    """A checkpoint saved mid-epoch (preemption) carries the features extracted so far; the
    resumed model adds the rest and builds the bank a never-interrupted fit builds."""
    whole = fit(coreset_fraction=0.5)
    first = fit(coreset_fraction=0.5)
    with torch.no_grad():
        head, first._grid = first.patch_features(GOOD[:4])
        tail, _ = first.patch_features(GOOD[4:])
    first._train_features = [head]
    checkpoint: dict = {}
    first.on_save_checkpoint(checkpoint)

    resumed = PatchCore(
        "resnet10t", ["defect", "good"], pretrained=False, input_size=64, coreset_fraction=0.5
    )
    resumed.load_state_dict(first.state_dict())
    resumed.on_load_checkpoint(checkpoint)
    resumed.on_train_epoch_start()  # Lightning calls it again when a run resumes mid-epoch
    resumed._train_features.append(tail)
    resumed.build_bank()
    assert torch.equal(resumed.memory_bank, whole.memory_bank)
