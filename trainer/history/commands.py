"""What ``scripts/history.py`` does: list, compare, plot the run history, and flag regressions.

``run_command(cfg)`` takes the keys of ``configs/history.yaml`` (a DictConfig or a plain dict)
and returns the exit code: 0 done, 1 ``regressions`` found one. Bad input (no database, a run id
that matches no single run, a metric no run has) raises ``ConfigError``, which the entry point
prints as one line with exit code 2. The history is only read; ``plot`` writes its PNG.

    from trainer.history import run_command
    run_command({"command": "regressions", "db": "outputs/history.sqlite", "metric": "test/f1"})
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from trainer.errors import ConfigError
from trainer.history.store import RunHistory, regressions

__all__ = [
    "COMMANDS",
    "KEY_METRICS",
    "run_command",
    "list_runs",
    "compare",
    "plot",
    "flag_regressions",
]

KEY_METRICS = ("test/acc", "test/balanced_acc", "test/f1", "test/auroc_pass_fail", "test/ece")
FILTERS = ("task", "experiment", "tag", "fingerprint", "backbone")


def _console() -> Console:
    return Console() if sys.stdout.isatty() else Console(width=180)  # pipes: no wrapping


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)


def _runs(history: RunHistory, cfg: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The runs the filter keys select (a value Hydra read as a number, e.g. an all-digit
    fingerprint, is matched as its text)."""
    given = {k: cfg.get(k) for k in FILTERS}
    return history.runs(**{k: None if v is None else str(v) for k, v in given.items()})


def _metric(cfg: Mapping[str, Any]) -> str:
    metric = cfg.get("metric")
    if not metric:
        raise ConfigError("metric: required, e.g. metric=test/f1")
    return str(metric)


def list_runs(history: RunHistory, cfg: Mapping[str, Any]) -> int:
    """The runs as a table, newest last; ``metrics`` names the metric columns."""
    runs = _runs(history, cfg)
    metrics = cfg.get("metrics") or list(KEY_METRICS)
    metrics = metrics.split(",") if isinstance(metrics, str) else [str(m) for m in metrics]
    table = Table(title=f"{len(runs)} runs in {history.path}")
    for column in ("run", "started (UTC)", "task", "experiment", "backbone", "data", "commit"):
        table.add_column(column, no_wrap=column in ("run", "started (UTC)"))
    for metric in metrics:
        table.add_column(metric, justify="right")
    table.add_column("gate")
    for run_ in runs:
        m = run_["metrics"] or {}
        commit = (run_["git_commit"] or "")[:8] + ("+" if run_["git_dirty"] else "")
        table.add_row(
            run_["run_id"],
            (run_["started_utc"] or "")[:19].replace("T", " "),
            run_["task"],
            run_["experiment"] or "",
            run_["backbone"] or "",
            (run_["data_fingerprint"] or "")[:8],
            commit,
            *(_fmt(m.get(name)) for name in metrics),
            run_["gate"] or "",
        )
    _console().print(table)
    return 0


def compare(history: RunHistory, cfg: Mapping[str, Any]) -> int:
    """Two runs (``runs=[A,B]``, id prefixes) side by side, differences in yellow."""
    given = cfg.get("runs")
    if isinstance(given, str) or given is None or len(given) != 2:
        raise ConfigError(f"runs: give two run ids, e.g. runs=[A,B] (got {given})")
    a, b = (history.get(str(run_id)) for run_id in given)
    for run_id, found in zip(given, (a, b), strict=True):
        if found is None:
            raise ConfigError(f"runs: no single run matches '{run_id}' in {history.path}")
    table = Table(title="compare")
    table.add_column("")
    table.add_column(a["run_id"])
    table.add_column(b["run_id"])
    table.add_column("b - a", justify="right")
    for key in (
        "task",
        "experiment",
        "backbone",
        "data_fingerprint",
        "git_commit",
        "config_digest",
        "checkpoint",
        "gate",
        "started_utc",
    ):
        style = "" if a[key] == b[key] else "yellow"
        table.add_row(key, _fmt(a[key]), _fmt(b[key]), "", style=style)
    table.add_row("overrides", " ".join(a["overrides"] or []), " ".join(b["overrides"] or []), "")
    ma, mb = a["metrics"] or {}, b["metrics"] or {}
    for name in sorted(set(ma) | set(mb)):
        va, vb = ma.get(name), mb.get(name)
        delta = f"{vb - va:+.4f}" if isinstance(va, float) and isinstance(vb, float) else ""
        table.add_row(name, _fmt(va), _fmt(vb), delta)
    _console().print(table)
    return 0


def plot(history: RunHistory, cfg: Mapping[str, Any]) -> int:
    """``metric`` over time as a PNG (``out``), one line per data fingerprint."""
    from datetime import datetime

    from matplotlib.figure import Figure

    metric = _metric(cfg)
    runs = [r for r in _runs(history, cfg) if (r["metrics"] or {}).get(metric) is not None]
    if not runs:
        raise ConfigError(f"metric: no run in {history.path} has metric '{metric}'")
    fig = Figure(figsize=(8, 4), layout="constrained")
    ax = fig.subplots()
    for fingerprint in dict.fromkeys(r["data_fingerprint"] for r in runs):
        mine = [r for r in runs if r["data_fingerprint"] == fingerprint]
        times = [datetime.fromisoformat(r["ended_utc"] or r["started_utc"]) for r in mine]
        values = [r["metrics"][metric] for r in mine]
        ax.plot(times, values, "o-", label=f"data {str(fingerprint)[:8]}")
    ax.set(title=f"{metric} over time", ylabel=metric, xlabel="run end (UTC)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.autofmt_xdate()
    out = Path(str(cfg.get("out") or f"{metric.replace('/', '_')}.png")).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    _console().print(f"Wrote {out} ({len(runs)} runs)")
    return 0


def flag_regressions(history: RunHistory, cfg: Mapping[str, Any]) -> int:
    """Runs worse than the best earlier run on the same data by more than ``margin``: exit 1."""
    metric, margin = _metric(cfg), float(cfg.get("margin", 0.01))
    runs = _runs(history, cfg)
    lower = bool(cfg.get("lower_is_better", False))
    flagged = regressions(runs, metric, margin, higher_is_better=not lower)
    if not flagged:
        _console().print(f"No regression of {metric} beyond {margin} in {len(runs)} runs.")
        return 0
    table = Table(title=f"regressions of {metric} (margin {margin})", style="red")
    for column in ("run", "value", "best earlier", "best run", "data"):
        table.add_column(column)
    for f in flagged:
        table.add_row(
            f["run"]["run_id"],
            _fmt(f["value"]),
            _fmt(f["best"]),
            f["best_run"],
            (f["run"]["data_fingerprint"] or "")[:8],
        )
    _console().print(table)
    return 1


COMMANDS: dict[str, Callable[[RunHistory, Mapping[str, Any]], int]] = {
    "list": list_runs,
    "compare": compare,
    "plot": plot,
    "regressions": flag_regressions,
}


def run_command(cfg: Mapping[str, Any]) -> int:
    """Run ``cfg["command"]`` (default ``list``) on the database ``cfg["db"]``; the exit code."""
    command = str(cfg.get("command") or "list")
    if command not in COMMANDS:
        raise ConfigError(f"command: '{command}' is not one of {', '.join(COMMANDS)}")
    db = Path(str(cfg.get("db"))).expanduser()
    if not cfg.get("db") or not db.is_file():
        raise ConfigError(
            f"db: the history database '{db}' does not exist; run train.py or eval.py first, "
            "or give db=PATH"
        )
    return COMMANDS[command](RunHistory(db), cfg)
