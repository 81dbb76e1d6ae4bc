"""eval.py: the same figures as the test step, the report, the operating point, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import compose_cfg
from tests.evaluation.helpers import Trained, run_eval
from trainer.checkpoint import checkpoint_metadata
from trainer.errors import DataError
from trainer.evaluate import evaluate
from trainer.operating_point import choose_operating_point, rates_at


def eval_cfg(tmp: Path, *overrides: str):
    return compose_cfg([*overrides, "logger=tensorboard"], tmp, config_name="eval")


def test_eval_repeats_the_test_step(trained: Trained, tmp_path: Path) -> None:
    out = evaluate(eval_cfg(tmp_path, f"ckpt_path={trained.best}"))
    metrics = out["metrics"]
    # the names the test step logs (trainer/models/metrics.py), as train() returned them
    shared = [k for k in trained.metrics if k in ("test/acc", "test/f1") or "test/auroc" in k]
    assert {"test/acc", "test/f1", "test/auroc", "test/auroc_pass_fail"} <= set(shared)
    for name in shared:
        assert metrics[name] == pytest.approx(trained.metrics[name], abs=1e-6), name
    for name in (
        "test/balanced_acc",
        "test/ece",
        "test/precision_good",
        "test/recall_good",
        "test/f1_solder_bridge",
        "test/false_alarm_rate_at_op",
    ):
        assert 0 <= metrics[name] <= 1, name
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
    card = (trained.best.parent / "model_card.md").read_text()
    assert "## Operating point" in card and "confusion_matrix.png" in card
    assert checkpoint_metadata(trained.best)["data"]["fingerprint"] in card


def test_training_writes_the_operating_point_and_report(trained: Trained) -> None:
    op = checkpoint_metadata(trained.best)["operating_point"]
    assert set(op) == {"threshold", "target_recall", "val_recall", "good_class", "score"}
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
    assert op["threshold"] == pytest.approx(0.35)  # every defect caught, one false alarm
    assert rates_at(score, is_defect, op["threshold"]) == {
        "defect_recall": 1.0,
        "false_alarm_rate": 0.25,
    }
    op = choose_operating_point(score, is_defect, 0.8, "good")
    assert op["threshold"] == pytest.approx(0.6) and op["val_recall"] == pytest.approx(5 / 6)


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
