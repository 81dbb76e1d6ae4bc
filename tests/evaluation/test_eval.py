"""eval.py: the same figures as the test step, the report, the operating point, bad input."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn import metrics as sk
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torchmetrics.classification import BinarySpecificityAtSensitivity

from tests.conftest import compose_cfg
from tests.helpers.evaluation import Trained, run_eval
from trainer.checkpoint.read import checkpoint_metadata
from trainer.errors import DataError
from trainer.evaluation import report as evaluate_module
from trainer.evaluation.operating_point import choose_operating_point, rates_at
from trainer.metrics.summary import ECE_BINS, Evaluation, compute_metrics
from trainer.tasks.evaluate import evaluate


def eval_cfg(tmp: Path, *overrides: str):
    return compose_cfg([*overrides, "logger=tensorboard"], tmp, config_name="eval")


def ece_by_hand(probs: np.ndarray, target: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error counted with numpy: equal-width bins of the top probability,
    each bin's |accuracy - mean confidence| weighted by its share of the images."""
    conf, hit = probs.max(1), probs.argmax(1) == target
    which = np.minimum((conf * bins).astype(int), bins - 1)
    return sum(
        (which == b).mean() * abs(hit[which == b].mean() - conf[which == b].mean())
        for b in range(bins)
        if (which == b).any()
    )


def assert_equals_scikit_learn(
    scalars: dict[str, float], probs: np.ndarray, target: np.ndarray, classes: list[str]
) -> None:
    """Every classification figure against scikit-learn, and ECE against ``ece_by_hand``.

    Recall and balanced accuracy cover the classes in the targets (``balanced_accuracy_score``);
    precision and F1 the classes in the targets or the predictions (scikit-learn's default
    labels, ``zero_division=0``). A class outside them has nan.
    """
    pred = probs.argmax(1)
    in_target, seen = np.unique(target).tolist(), np.unique(np.r_[target, pred]).tolist()
    assert scalars["test/balanced_acc"] == pytest.approx(sk.balanced_accuracy_score(target, pred))
    assert scalars["test/acc"] == pytest.approx(sk.accuracy_score(target, pred))
    for name, fn, labels in (
        ("precision", sk.precision_score, seen),
        ("recall", sk.recall_score, in_target),
        ("f1", sk.f1_score, seen),
    ):
        macro = fn(target, pred, labels=labels, average="macro", zero_division=0)
        assert scalars[f"test/{name}"] == pytest.approx(macro), name
        values = fn(target, pred, labels=labels, average=None, zero_division=0)
        each = dict(zip(labels, values, strict=True))
        expected = [each.get(i, np.nan) for i in range(len(classes))]
        ours = [scalars[f"test/{name}_{c}"] for c in classes]
        assert ours == pytest.approx(expected, nan_ok=True), name
    assert scalars["test/ece"] == pytest.approx(ece_by_hand(probs, target), abs=1e-6)


def test_metrics_equal_scikit_learn() -> None:
    classes = ["good", "missing", "misplaced", "solder_bridge"]
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(300, 4, generator=g) * 2
    target = torch.randint(0, 4, (300,), generator=g)
    ev = compute_metrics(logits, target, classes, "good", "test")
    probs = logits.softmax(-1).numpy()
    assert_equals_scikit_learn(ev.scalars, probs, target.numpy(), classes)
    expected = sk.confusion_matrix(target.numpy(), probs.argmax(1), labels=[0, 1, 2, 3])
    assert ev.confusion.tolist() == expected.tolist()


def test_a_class_absent_from_the_targets() -> None:
    """A folder with a subset of the classes: an absent class has no recall (nan), and balanced
    accuracy averages the classes present (scikit-learn's balanced_accuracy_score)."""
    classes = ["good", "missing", "misplaced", "solder_bridge"]
    target = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])  # no misplaced, no solder_bridge
    pred = torch.tensor([0, 0, 0, 0, 1, 1, 1, 2])  # one missing board called misplaced
    logits = torch.nn.functional.one_hot(pred, 4).float() * 5
    ev = compute_metrics(logits, target, classes, "good", "test")
    s = ev.scalars
    assert s["test/balanced_acc"] == pytest.approx((1 + 3 / 4) / 2)  # 0.875, not 0.583
    assert s["test/recall"] == s["test/balanced_acc"]
    assert np.isnan(s["test/recall_misplaced"]) and np.isnan(s["test/recall_solder_bridge"])
    assert s["test/precision_misplaced"] == 0 and s["test/f1_misplaced"] == 0  # a false call
    assert np.isnan(s["test/precision_solder_bridge"]) and np.isnan(s["test/f1_solder_bridge"])
    assert_equals_scikit_learn(s, logits.softmax(-1).numpy(), target.numpy(), classes)


def test_eval_repeats_the_test_step(
    trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[Evaluation] = []

    def spy(*args, **kwargs) -> Evaluation:  # keeps the probabilities for the references
        seen.append(compute_metrics(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(evaluate_module, "compute_metrics", spy)
    out = evaluate(eval_cfg(tmp_path, f"ckpt_path={trained.best}"))
    metrics = out["metrics"]
    # the names the test step logs (trainer/metrics/split.py), as train() returned them
    shared = [k for k in trained.metrics if k in ("test/acc", "test/f1") or "test/auroc" in k]
    assert {"test/acc", "test/f1", "test/auroc", "test/auroc_pass_fail"} <= set(shared)
    for name in shared:
        assert metrics[name] == pytest.approx(trained.metrics[name], abs=1e-6), name
    (ev,) = seen
    probs, target = ev.probs.numpy(), ev.target.numpy()
    assert_equals_scikit_learn(metrics, probs, target, out["confusion_matrix"]["classes"])
    good = out["confusion_matrix"]["classes"].index("good")
    flagged = (1 - probs[:, good]) >= np.float32(out["operating_point"]["threshold"])
    assert metrics["test/false_alarm_rate_at_op"] == pytest.approx(flagged[target == good].mean())
    assert metrics["test/defect_recall_at_op"] == pytest.approx(flagged[target != good].mean())
    assert out["same_data_as_training"] is True
    counts = torch.tensor(out["confusion_matrix"]["rows_true_columns_predicted"])
    assert int(counts.sum()) == metrics["test/num_images"] == 16

    run = tmp_path / "run"
    assert json.loads((run / "metrics.json").read_text())["metrics"] == metrics
    for name in ("confusion_matrix", "roc_pr", "reliability"):
        assert (run / "figures" / f"{name}.png").stat().st_size > 5000
    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0})
    acc.Reload()
    assert {"test/f1", "test/ece", "test/balanced_acc"} <= set(acc.Tags()["scalars"])
    assert {"test/confusion_matrix", "test/roc_pr", "test/reliability"} <= set(acc.Tags()["images"])
    for name in ("confusion_matrix", "roc_pr", "reliability"):  # TensorBoard shows the saved PNG
        (event,) = acc.Images(f"test/{name}")
        shown = np.asarray(Image.open(io.BytesIO(event.encoded_image_string)).convert("RGB"))
        saved = np.asarray(Image.open(run / "figures" / f"{name}.png").convert("RGB"))
        assert np.array_equal(shown, saved), name
    card = (trained.best.parent / "model_card.md").read_text()
    assert "## Operating point" in card and "confusion_matrix.png" in card
    assert checkpoint_metadata(trained.best)["data"]["fingerprint"] in card


def test_training_writes_the_operating_point_and_report(trained: Trained) -> None:
    op = checkpoint_metadata(trained.best)["operating_point"]
    assert set(op) == {"threshold", "target_recall", "val_recall", "good_class", "score", "margin"}
    assert op["score"] == "1 - p(good)" and op["good_class"] == "good"
    assert op["target_recall"] == 0.99 and op["val_recall"] >= 0.99
    report = json.loads((trained.run / "metrics.json").read_text())
    assert report["operating_point"]["threshold"] == op["threshold"]
    assert "test/false_alarm_rate_at_op" in trained.metrics
    assert (trained.run / "checkpoints" / "model_card.md").is_file()
    assert not list(trained.best.parent.glob("*.tmp"))  # the atomic write left nothing behind


def test_operating_point_meets_the_target_with_fewest_false_alarms() -> None:
    score = torch.tensor([0.1, 0.2, 0.3, 0.35, 0.4, 0.6, 0.7, 0.8, 0.9, 0.95])
    is_defect = torch.tensor([0, 0, 0, 1, 0, 1, 1, 1, 1, 1])
    op = choose_operating_point(score, is_defect, 0.99, "good")
    # every defect caught with one false alarm (0.35 and up); the threshold lies halfway between
    # the lowest score it must flag (0.35) and the next lower one (0.3)
    assert op["threshold"] == pytest.approx(0.325) and op["margin"] == pytest.approx(0.025)
    assert rates_at(score, is_defect, op["threshold"]) == {
        "defect_recall": 1.0,
        "false_alarm_rate": 0.25,
    }
    op = choose_operating_point(score, is_defect, 0.8, "good")
    assert op["threshold"] == pytest.approx(0.5) and op["val_recall"] == pytest.approx(5 / 6)


def test_the_threshold_keeps_every_validation_decision_with_a_margin() -> None:
    """On the threshold itself, the last bit of a float (TF32, another kernel) decides an image;
    halfway to the next score every validation image keeps its decision, with room to spare."""
    rng = np.random.default_rng(0)
    score = torch.from_numpy(rng.random(200).astype(np.float32))
    is_defect = torch.from_numpy(rng.random(200) < 0.3).long()
    for target in (0.5, 0.9, 0.99, 1.0):
        op = choose_operating_point(score, is_defect, target, "good")
        _, at_score = BinarySpecificityAtSensitivity(min_sensitivity=target)(score, is_defect)
        # the same images flagged as at torchmetrics' own threshold (a validation score)
        assert torch.equal(score >= op["threshold"], score >= at_score), target
        nearest = (score - op["threshold"]).abs().min().item()
        assert nearest == pytest.approx(op["margin"]) and op["margin"] > 0, target
    # two scores a float32 step apart: nothing between them, the threshold is the score itself
    tight = torch.tensor([0.5, float(np.nextafter(np.float32(0.5), np.float32(1)))])
    op = choose_operating_point(tight, torch.tensor([0, 1]), 1.0, "good")
    assert op["threshold"] == float(tight[1]) and op["margin"] == 0.0


def test_a_folder_with_a_class_the_model_does_not_know(trained: Trained, tmp_path: Path) -> None:
    root = tmp_path / "folder"
    for name in ("good", "scratched"):
        (root / name).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (40, 40), (i * 30, 90, 0)).save(root / name / f"{i}.png")
    cfg = eval_cfg(tmp_path, f"ckpt_path={trained.best}", "data=folder", f"data.root={root}")
    with pytest.raises(DataError, match="scratched"):
        evaluate(cfg)


def test_a_folder_with_known_classes_evaluates_all_of_it(trained: Trained, tmp_path: Path) -> None:
    src = checkpoint_metadata(trained.best)["data"]["root"]
    root = tmp_path / "subset"
    for name in ("good", "solder_bridge"):  # a subset of the model's classes, in another order
        (root / name).mkdir(parents=True)
        for path in sorted((Path(src) / "test" / name).glob("*.png"))[:3]:
            (root / name / path.name).write_bytes(path.read_bytes())
    cfg = eval_cfg(
        tmp_path, f"ckpt_path={trained.best}", "data=folder", f"data.root={root}", "split=all"
    )
    out = evaluate(cfg)
    assert out["metrics"]["test/num_images"] == 6 and out["same_data_as_training"] is False
    matrix = out["confusion_matrix"]["rows_true_columns_predicted"]
    assert sum(matrix[0]) == 3 and sum(matrix[3]) == 3  # rows in the model's class order


def assert_one_line_error(result, *needles: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout[-2000:], result.stderr)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.slow  # a subprocess per command: imports torch and Lightning each time
def test_cli_bad_checkpoints(tmp_path: Path) -> None:
    missing = run_eval(f"ckpt_path={tmp_path / 'nope.ckpt'}", tmp=tmp_path / "a")
    assert_one_line_error(missing, "nope.ckpt", "does not exist")
    fake = tmp_path / "fake.ckpt"
    fake.write_text("not a checkpoint")
    result = run_eval(f"ckpt_path={fake}", tmp=tmp_path / "b")
    assert_one_line_error(result, "fake.ckpt", "not a checkpoint")


@pytest.mark.slow  # a subprocess per command: imports torch and Lightning each time
def test_cli_unknown_class_and_unknown_gate_metric(trained: Trained, tmp_path: Path) -> None:
    root = tmp_path / "folder"
    for name in ("good", "scratched"):
        (root / name).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (40, 40), (i * 30, 90, 0)).save(root / name / f"{i}.png")
    result = run_eval(
        f"ckpt_path={trained.best}", "data=folder", f"data.root={root}", tmp=tmp_path / "a"
    )
    assert_one_line_error(result, "scratched", "does not know")
    result = run_eval(f"ckpt_path={trained.best}", "gate.min.test/f1_macro=0.9", tmp=tmp_path / "b")
    assert_one_line_error(result, "test/f1_macro", "not computed", "test/f1")


def test_predictions_for_the_report_use_full_float32(monkeypatch: pytest.MonkeyPatch) -> None:
    """train() allows TF32 on a GPU; the report (and the threshold chosen on it) must not use it:
    the bundle runs full float32."""
    from trainer.evaluation.predictions import predict

    seen: list[tuple[str, bool]] = []

    class Spy(torch.nn.Module):
        def normalize(self, x: torch.Tensor) -> torch.Tensor:
            return x.float()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append((torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32))
            return torch.zeros(len(x), 2)

    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
    torch.set_float32_matmul_precision("high")
    try:
        loader = [(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.tensor([0, 1]))]
        predict(Spy(), loader, torch.device("cpu"), torch.tensor([0, 1]))
        assert seen == [("highest", False)]
        assert torch.get_float32_matmul_precision() == "high"  # restored afterwards
        assert torch.backends.cudnn.allow_tf32 is True
    finally:
        torch.set_float32_matmul_precision("highest")
