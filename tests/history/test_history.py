"""The run history: concurrent writers, filters, regressions, the CLI, and the extra loggers."""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, compose_cfg
from trainer.errors import ConfigError
from trainer.history.commands import run_command
from trainer.history.store import RunHistory, regressions


def _append(args: tuple[str, int]) -> str:
    path, i = args
    metrics = {"test/f1": 0.5 + i / 100, "blob": "x" * 20000}  # big rows: long transactions
    return RunHistory(path, timeout_s=0.05).append(  # a short timeout forces the retry path
        {"task": "train", "backbone": f"net{i}", "metrics": metrics, "started_utc": f"2026-01-0{i}"}
    )


def test_eight_processes_append_at_once(tmp_path: Path) -> None:
    path = str(tmp_path / "history.sqlite")
    with mp.get_context("spawn").Pool(8) as pool:  # real separate processes
        ids = pool.map(_append, [(path, i) for i in range(8)])
    rows = RunHistory(path).runs()
    assert len(rows) == 8 and {r["run_id"] for r in rows} == set(ids)
    assert sorted(r["backbone"] for r in rows) == [f"net{i}" for i in range(8)]
    assert all(len(r["metrics"]["blob"]) == 20000 for r in rows)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def _run(i: int, f1: float, fingerprint: str, **extra) -> dict:
    return {
        "run_id": f"r{i}",
        "started_utc": f"2026-01-{i + 10}T00:00:00+00:00",
        "ended_utc": f"2026-01-{i + 10}T00:10:00+00:00",
        "task": "train",
        "data_fingerprint": fingerprint,
        "metrics": {"test/f1": f1},
        **extra,
    }


def test_regressions_compare_with_the_best_earlier_run_on_the_same_data() -> None:
    runs = [
        _run(0, 0.90, "a"),
        _run(1, 0.95, "a"),
        _run(2, 0.93, "a"),
        _run(3, 0.50, "b"),
        _run(4, 0.945, "a"),
    ]
    flagged = regressions(runs, "test/f1", margin=0.01)
    assert [(f["run"]["run_id"], f["best_run"]) for f in flagged] == [("r2", "r1")]


NAN = float("nan")


@pytest.mark.parametrize("higher_is_better", [True, False])
def test_a_nan_metric_is_never_the_best(higher_is_better: bool) -> None:
    """nan compares false with everything: as the first 'best' it would hide every regression."""
    sign = 1 if higher_is_better else -1
    runs = [
        _run(0, NAN, "a"),
        _run(1, sign * 0.95, "a"),
        _run(2, NAN, "a"),
        _run(3, sign * 0.90, "a"),  # worse than r1 by 0.05
        _run(4, float("inf") * sign, "a"),  # not a number one can beat either
        _run(5, sign * 0.80, "a"),
    ]
    flagged = regressions(runs, "test/f1", margin=0.01, higher_is_better=higher_is_better)
    assert [(f["run"]["run_id"], f["best_run"]) for f in flagged] == [("r3", "r1"), ("r5", "r1")]
    assert all(math.isfinite(f["best"]) and math.isfinite(f["value"]) for f in flagged)


def test_nan_metrics_stored_as_json_null(tmp_path: Path) -> None:
    """The metrics column stays strict JSON, so SQLite's json functions can read every row."""
    history = RunHistory(tmp_path / "h.sqlite")
    for run in (_run(0, NAN, "a"), _run(1, 0.95, "a"), _run(2, 0.90, "a")):
        history.append(run)
    rows = history.runs()
    assert "test/f1" in rows[0]["metrics"] and rows[0]["metrics"]["test/f1"] is None
    flagged = regressions(rows, "test/f1", margin=0.01)
    assert [(f["run"]["run_id"], f["best_run"]) for f in flagged] == [("r2", "r1")]
    with sqlite3.connect(history.path) as conn:
        sql = "SELECT json_extract(metrics, '$.\"test/f1\"') FROM runs ORDER BY run_id"
        assert [v for (v,) in conn.execute(sql)] == [None, 0.95, 0.90]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    history = RunHistory(tmp_path / "h.sqlite")
    for run in (
        _run(0, 0.90, "aaaa", backbone="resnet18", tags=["pcb"], experiment="pcb_defect"),
        _run(1, 0.80, "aaaa", backbone="vit_tiny", tags=["dev"]),
        _run(2, 0.95, "bbbb", backbone="resnet18", tags=["pcb"]),
    ):
        history.append(run)
    return history.path


def test_filters(db: Path) -> None:
    history = RunHistory(db)
    assert [r["run_id"] for r in history.runs(backbone="resnet18")] == ["r0", "r2"]
    assert [r["run_id"] for r in history.runs(tag="dev")] == ["r1"]
    assert [r["run_id"] for r in history.runs(fingerprint="bb")] == ["r2"]
    assert [r["run_id"] for r in history.runs(experiment="pcb_defect")] == ["r0"]


def _history_cfg(tmp_path: Path, *overrides: str):
    """configs/history.yaml as the script composes it, with ``overrides``."""
    return compose_cfg(list(overrides), tmp_path, config_name="history")


def test_commands_list_compare_plot_regressions(db: Path, tmp_path: Path, capsys) -> None:
    def run(*overrides: str) -> int:
        return run_command(_history_cfg(tmp_path, f"db={db}", *overrides))

    assert run("command=list", "backbone=resnet18") == 0
    out = capsys.readouterr().out
    assert "r0" in out and "r2" in out and "r1" not in out
    assert run("command=list", "tag=dev", "metrics=[test/f1]") == 0
    out = capsys.readouterr().out
    assert "r1" in out and "r0" not in out and "test/f1" in out and "test/ece" not in out
    assert run("command=compare", "runs=[r0,r1]") == 0
    assert "-0.1000" in capsys.readouterr().out
    png = tmp_path / "f1.png"
    assert run("command=plot", "metric=test/f1", f"out={png}") == 0
    assert png.stat().st_size > 5000
    assert run("command=regressions", "metric=test/f1") == 1
    assert "r1" in capsys.readouterr().out
    assert run("command=regressions", "metric=test/f1", "margin=0.2") == 0
    assert run("command=regressions", "fingerprint=bb") == 0  # r2 alone: nothing to regress from


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["command=compare", "runs=[r0]"], "runs: give two run ids"),
        (["command=compare", "runs=[r0,nope]"], "runs: no single run matches 'nope'"),
        (["command=plot", "metric=test/nope"], "metric: no run in"),
        (["command=nope"], "command: 'nope' is not one of list, compare, plot, regressions"),
    ],
)
def test_commands_refuse_bad_input(db: Path, tmp_path: Path, overrides, needle: str) -> None:
    with pytest.raises(ConfigError, match="^" + re.escape(needle)):
        run_command(_history_cfg(tmp_path, f"db={db}", *overrides))
    with pytest.raises(ConfigError, match="^db: the history database .* does not exist"):
        run_command(_history_cfg(tmp_path, f"db={tmp_path / 'none.sqlite'}"))


def run_script(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "history.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_script_exit_codes_and_one_line_errors(db: Path, tmp_path: Path) -> None:
    """0 done, 1 a regression found, 2 bad input in one line; no run folder, no log file."""
    work = tmp_path / "work"
    work.mkdir()
    listed = run_script(f"db={db}", "backbone=resnet18", cwd=work)
    assert listed.returncode == 0, listed.stderr
    assert "r0" in listed.stdout and "r1" not in listed.stdout
    found = run_script(f"db={db}", "command=regressions", "metric=test/f1", cwd=work)
    assert found.returncode == 1 and "r1" in found.stdout, found.stderr
    for bad, needle in [
        ([f"db={db}", "metrc=test/f1"], "metrc"),  # a typo is bad input, not "a regression"
        ([f"db={db}", "--metric", "test/f1"], "unrecognized arguments: --metric"),
        ([f"db={tmp_path / 'none.sqlite'}"], "none.sqlite' does not exist"),
        ([f"db={db}", "command=compare", "runs=[r0,zz]"], "no single run matches 'zz'"),
    ]:
        result = run_script(*bad, cwd=work)
        assert result.returncode == 2, (bad, result.stdout, result.stderr)
        assert needle in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert list(work.iterdir()) == []  # read only: no outputs/, .hydra/ or history.log


def test_every_train_run_is_recorded(tiny_cfg) -> None:
    from trainer.tasks.train import train

    cfg = tiny_cfg(
        "logger=csv",
        "tags=[csvtest]",
        "+trainer.limit_train_batches=1",
        "trainer.log_every_n_steps=1",
    )
    train(cfg)
    (row,) = RunHistory(Path(cfg.paths.log_dir) / "history.sqlite").runs()
    assert row["task"] == "train" and row["backbone"] == "test_resnet"
    assert row["tags"] == ["csvtest"] and row["gate"] == "off"
    assert len(row["data_fingerprint"]) == 64 and len(row["config_digest"]) == 16
    assert "test/acc" in row["metrics"] and row["started_utc"] <= row["ended_utc"]
    assert "git_commit" in row and "logger=csv" in row["overrides"]
    # logger=csv: Lightning's CSVLogger wrote the metrics
    csv = (Path(cfg.paths.output_dir) / "csv" / "metrics.csv").read_text()
    assert "train/loss_step" in csv.splitlines()[0]


def test_mlflow_logger(tiny_cfg, tmp_path: Path, monkeypatch) -> None:
    import hydra

    from trainer.utils import mlflow_logger
    from trainer.utils.entry import user_error_message

    cfg = tiny_cfg("logger=mlflow")
    assert cfg.logger.mlflow.tracking_uri == f"sqlite:///{cfg.paths.log_dir}/mlflow.db"
    monkeypatch.setattr(mlflow_logger, "mlflow_available", lambda: False)
    with pytest.raises(Exception) as info:  # Hydra wraps it; the entry point prints one line
        hydra.utils.instantiate(cfg.logger.mlflow)
    assert "pip install 'inspection-trainer[mlflow]'" in user_error_message(info.value)
    monkeypatch.undo()
    if not mlflow_logger.mlflow_available():
        pytest.skip("mlflow is not installed")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # the quick store for a test
    cfg = tiny_cfg("logger=mlflow", f"logger.mlflow.tracking_uri=file:{tmp_path / 'mlruns'}")
    logger = hydra.utils.instantiate(cfg.logger.mlflow)
    logger.log_metrics({"test/f1": 0.5}, step=0)
    logger.finalize("success")
    assert list((tmp_path / "mlruns").rglob("metrics/test/f1"))
