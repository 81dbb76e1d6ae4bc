"""The run history (trainer/history/store.py): list, compare, plot, and flag regressions.

Examples:
    python scripts/history.py                                   # every run, newest last
    python scripts/history.py list --backbone resnet18 --tag pcb --task train
    python scripts/history.py list --fingerprint 13ea7430 --experiment pcb_defect
    python scripts/history.py compare 20261127-2015 20261128-0930   # two runs side by side (id prefixes)
    python scripts/history.py plot test/f1 --out f1.png         # a metric over time, one line per dataset
    python scripts/history.py regressions --metric test/f1 --margin 0.02   # exit 1 when one is found

The database is ``outputs/history.sqlite`` unless ``--db`` says otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

try:
    import trainer  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console
from rich.table import Table

from trainer.history.store import RunHistory, regressions

DEFAULT_DB = Path(__file__).resolve().parents[1] / "outputs" / "history.sqlite"
KEY_METRICS = ("test/acc", "test/balanced_acc", "test/f1", "test/auroc_pass_fail", "test/ece")
console = Console() if sys.stdout.isatty() else Console(width=180)  # pipes: no wrapping


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad input as a single stderr line (no usage dump), exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)


def _filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", help="train | eval")
    p.add_argument("--experiment", help="experiment name (e.g. pcb_defect)")
    p.add_argument("--tag", help="runs carrying this tag")
    p.add_argument("--fingerprint", help="data fingerprint (a prefix is enough)")
    p.add_argument("--backbone", help="timm model name")


def _runs(history: RunHistory, args: argparse.Namespace) -> list[dict[str, Any]]:
    return history.runs(
        task=args.task,
        experiment=args.experiment,
        tag=args.tag,
        fingerprint=args.fingerprint,
        backbone=args.backbone,
    )


def cmd_list(history: RunHistory, args: argparse.Namespace) -> int:
    runs = _runs(history, args)
    metrics = args.metrics.split(",") if args.metrics else list(KEY_METRICS)
    table = Table(title=f"{len(runs)} runs in {history.path}")
    for column in ("run", "started (UTC)", "task", "experiment", "backbone", "data", "commit"):
        table.add_column(column, no_wrap=column in ("run", "started (UTC)"))
    for metric in metrics:
        table.add_column(metric, justify="right")
    table.add_column("gate")
    for run in runs:
        m = run["metrics"] or {}
        commit = (run["git_commit"] or "")[:8] + ("+" if run["git_dirty"] else "")
        table.add_row(
            run["run_id"],
            (run["started_utc"] or "")[:19].replace("T", " "),
            run["task"],
            run["experiment"] or "",
            run["backbone"] or "",
            (run["data_fingerprint"] or "")[:8],
            commit,
            *(_fmt(m.get(name)) for name in metrics),
            run["gate"] or "",
        )
    console.print(table)
    return 0


def cmd_compare(history: RunHistory, args: argparse.Namespace) -> int:
    a, b = history.get(args.run_a), history.get(args.run_b)
    for given, run in ((args.run_a, a), (args.run_b, b)):
        if run is None:
            print(f"history: no single run matches '{given}'", file=sys.stderr)
            return 2
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
    console.print(table)
    return 0


def cmd_plot(history: RunHistory, args: argparse.Namespace) -> int:
    from datetime import datetime

    from matplotlib.figure import Figure

    runs = [r for r in _runs(history, args) if (r["metrics"] or {}).get(args.metric) is not None]
    if not runs:
        print(f"history: no run has metric '{args.metric}'", file=sys.stderr)
        return 2
    fig = Figure(figsize=(8, 4), layout="constrained")
    ax = fig.subplots()
    for fingerprint in dict.fromkeys(r["data_fingerprint"] for r in runs):
        mine = [r for r in runs if r["data_fingerprint"] == fingerprint]
        times = [datetime.fromisoformat(r["ended_utc"] or r["started_utc"]) for r in mine]
        values = [r["metrics"][args.metric] for r in mine]
        ax.plot(times, values, "o-", label=f"data {str(fingerprint)[:8]}")
    ax.set(title=f"{args.metric} over time", ylabel=args.metric, xlabel="run end (UTC)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.autofmt_xdate()
    out = Path(args.out or f"{args.metric.replace('/', '_')}.png")
    fig.savefig(out, dpi=110)
    console.print(f"Wrote {out} ({len(runs)} runs)")
    return 0


def cmd_regressions(history: RunHistory, args: argparse.Namespace) -> int:
    runs = _runs(history, args)
    flagged = regressions(runs, args.metric, args.margin, higher_is_better=not args.lower_is_better)
    if not flagged:
        console.print(f"No regression of {args.metric} beyond {args.margin} in {len(runs)} runs.")
        return 0
    table = Table(title=f"regressions of {args.metric} (margin {args.margin})", style="red")
    for column in ("run", "value", "best earlier", "best run", "data"):
        table.add_column(column)
    for f in flagged:
        run = f["run"]
        table.add_row(
            run["run_id"],
            _fmt(f["value"]),
            _fmt(f["best"]),
            f["best_run"],
            (run["data_fingerprint"] or "")[:8],
        )
    console.print(table)
    return 1


def main(argv: list[str] | None = None) -> int:
    p = _Parser(description="List, compare and plot the run history; flag regressions.")
    p.add_argument("--db", type=Path, default=DEFAULT_DB, help="history database")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
    lst = sub.add_parser("list", help="runs as a table (the default)")
    _filters(lst)
    lst.add_argument("--metrics", help="comma-separated metric columns")
    cmp_ = sub.add_parser("compare", help="two runs side by side")
    cmp_.add_argument("run_a")
    cmp_.add_argument("run_b")
    plot = sub.add_parser("plot", help="a metric over time as PNG")
    plot.add_argument("metric")
    plot.add_argument("--out", help="PNG path (default: <metric>.png)")
    _filters(plot)
    reg = sub.add_parser("regressions", help="runs worse than the best earlier run (same data)")
    reg.add_argument("--metric", default="test/f1")
    reg.add_argument("--margin", type=float, default=0.01)
    reg.add_argument("--lower-is-better", action="store_true", help="e.g. for test/ece")
    _filters(reg)
    args = p.parse_args(argv)
    if not args.db.is_file():
        print(
            f"history: database '{args.db}' does not exist; run train.py or eval.py first, "
            "or pass --db",
            file=sys.stderr,
        )
        return 2
    history = RunHistory(args.db)
    if args.command is None:
        args = lst.parse_args([], namespace=args)
        args.command = "list"
    commands = {
        "list": cmd_list,
        "compare": cmd_compare,
        "plot": cmd_plot,
        "regressions": cmd_regressions,
    }
    return commands[args.command](history, args)


if __name__ == "__main__":
    sys.exit(main())
