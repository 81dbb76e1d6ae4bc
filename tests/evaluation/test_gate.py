"""The release gate: a low bound passes (exit 0), a high one fails (exit 1), names are checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import compose_cfg
from tests.helpers.evaluation import Trained, run_eval
from trainer.errors import ConfigError
from trainer.evaluation.gate import GateFailed, enforce, evaluate_gate, rewrite_gate_args, summary


def test_bounds_pass_and_fail() -> None:
    metrics = {"test/f1": 0.9, "test/ece": 0.08}
    checks = evaluate_gate({"min": {"test/f1": 0.85}, "max": {"test/ece": 0.05}}, metrics)
    assert [c.passed for c in checks] == [True, False]
    assert summary(checks)["passed"] is False
    with pytest.raises(GateFailed, match=r"test/ece = 0\.0800 \(needs <= 0\.05\)"):
        enforce(checks)
    enforce(evaluate_gate({"min": {"test/f1": 0.9}}, metrics))  # the bound itself passes


def test_unknown_metric_is_one_clear_error() -> None:
    with pytest.raises(ConfigError, match="'test/f1_macro' is not computed.*did you mean test/f1"):
        evaluate_gate({"min": {"test/f1_macro": 0.9}}, {"test/f1": 0.9, "test/acc": 1.0})


def test_slash_keys_are_rewritten_for_hydra() -> None:
    argv = [
        "eval.py",
        "ckpt_path=x",
        "gate.min.test/f1=0.95",
        "gate.max.test/ece=0.05",
        "gate.min.test/acc=0.9",
    ]
    assert rewrite_gate_args(argv) == [
        "eval.py",
        "ckpt_path=x",
        "gate.min={test/f1:0.95,test/acc:0.9}",
        "gate.max={test/ece:0.05}",
    ]
    cfg = compose_cfg(["ckpt_path=x", *rewrite_gate_args(argv)[2:]], Path("/tmp/unused"), "eval")
    assert cfg.gate.min == {"test/f1": 0.95, "test/acc": 0.9}
    assert cfg.gate.max == {"test/ece": 0.05}


@pytest.mark.slow  # a subprocess per command: imports torch and Lightning each time
def test_cli_same_checkpoint_passes_low_and_fails_high(trained: Trained, tmp_path: Path) -> None:
    ok = run_eval(f"ckpt_path={trained.best}", "gate.min.test/f1=0.0", tmp=tmp_path / "low")
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "gate: test/f1" in ok.stdout and "ok" in ok.stdout
    # Hydra's own dict form, quoted as a shell needs it
    bad = run_eval(f"ckpt_path={trained.best}", "gate.min={test/f1:1.01}", tmp=tmp_path / "high")
    assert bad.returncode == 1, (bad.returncode, bad.stderr[-2000:])
    assert "Traceback" not in bad.stderr
    assert "gate failed: test/f1 =" in bad.stderr and "needs >= 1.01" in bad.stderr


def test_train_applies_the_gate_and_records_it(tiny_cfg) -> None:
    from trainer.history.store import RunHistory
    from trainer.tasks.train import train

    cfg = tiny_cfg("debug=fast", "gate.max={test/acc:-1}")
    with pytest.raises(GateFailed, match="test/acc"):
        train(cfg)
    rows = RunHistory(Path(cfg.history.path)).runs(task="train")  # debug: the run's own
    assert [r["gate"] for r in rows] == ["failed"]
