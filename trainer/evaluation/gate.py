"""The release gate: minimum and maximum values for named metrics; a failed bound stops the build.

Config (``gate`` in configs/train.yaml and configs/eval.yaml; empty = off)::

    gate:
      min: {test/f1: 0.95}      # fail when test/f1 < 0.95
      max: {test/ece: 0.05}     # fail when test/ece > 0.05

On the command line Hydra's grammar reads ``/`` in a key as a config-group path, so
``gate.min.test/f1=0.95`` is not valid Hydra; the native form is a dict value,
``'gate.min={test/f1:0.95,test/acc:0.9}'``. ``train.py`` and ``eval.py`` also accept
``gate.min.test/f1=0.95`` by rewriting such arguments into that form (``rewrite_gate_args``).
"""

from __future__ import annotations

import difflib
import math
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from trainer.errors import ConfigError, TrainerError

T = TypeVar("T")
_ARG = re.compile(r"^(?:\+{1,2})?gate\.(min|max)\.([^=]+)=(.*)$")


class GateFailed(TrainerError):
    """At least one metric is outside its bound; the message names each one."""

    exit_code = 1


@dataclass
class Check:
    metric: str
    kind: str  # "min" | "max"
    bound: float
    value: float

    @property
    def passed(self) -> bool:
        if math.isnan(self.value):
            return False
        return self.value >= self.bound if self.kind == "min" else self.value <= self.bound

    def __str__(self) -> str:
        op = ">=" if self.kind == "min" else "<="
        verdict = "ok" if self.passed else "FAILED"
        return f"{self.metric} = {self.value:.4f} (needs {op} {self.bound:g}): {verdict}"


def rewrite_gate_args(argv: Sequence[str]) -> list[str]:
    """Turn ``gate.min.test/f1=0.95`` arguments into one ``gate.min={test/f1:0.95}`` per side."""
    out: list[str] = []
    bounds: dict[str, dict[str, str]] = {}
    for arg in argv:
        match = _ARG.match(arg)
        if match and "/" in match.group(2):
            bounds.setdefault(match.group(1), {})[match.group(2)] = match.group(3)
        else:
            out.append(arg)
    for side, items in bounds.items():
        out.append(f"gate.{side}={{{','.join(f'{k}:{v}' for k, v in items.items())}}}")
    return out


def _bounds(gate: Mapping[str, Any] | None, kind: str) -> dict[str, float]:
    items = dict((gate or {}).get(kind) or {})
    out = {}
    for metric, bound in items.items():
        try:
            out[str(metric)] = float(bound)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"gate.{kind}.{metric}: bound {bound!r} is not a number") from err
    return out


def enabled(gate: Mapping[str, Any] | None) -> bool:
    return bool(_bounds(gate, "min") or _bounds(gate, "max"))


def check_names(gate: Mapping[str, Any] | None, available: Sequence[str]) -> None:
    """Refuse a gate that names a metric the run does not compute (one line, closest names)."""
    for kind in ("min", "max"):
        for metric in _bounds(gate, kind):
            if metric not in available:
                close = difflib.get_close_matches(metric, list(available), n=3, cutoff=0.5)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise ConfigError(
                    f"gate.{kind}: metric '{metric}' is not computed by this run{hint} "
                    f"(computed: {', '.join(sorted(available))})"
                )


def evaluate_gate(gate: Mapping[str, Any] | None, metrics: Mapping[str, float]) -> list[Check]:
    """Every bound checked against ``metrics`` (the names must exist: see ``check_names``)."""
    check_names(gate, list(metrics))
    return [
        Check(metric, kind, bound, float(metrics[metric]))
        for kind in ("min", "max")
        for metric, bound in _bounds(gate, kind).items()
    ]


def apply_gate(
    gate: Mapping[str, Any] | None, metrics: Mapping[str, float]
) -> tuple[list[Check], str]:
    """The checks of ``gate`` on ``metrics`` and the result the history records: off | passed |
    failed (a gate naming an unknown metric raises here, before anything is written)."""
    if not enabled(gate):
        return [], "off"
    checks = evaluate_gate(gate, metrics)
    return checks, "passed" if all(c.passed for c in checks) else "failed"


def print_checks(checks: Sequence[Check]) -> None:
    """One line per bound, green or red."""
    from trainer.utils.rich_utils import console

    for check in checks:
        color = "green" if check.passed else "red"
        console.print(f"gate: [{color}]{check}[/{color}]", highlight=False, soft_wrap=True)


def summary(checks: Sequence[Check]) -> dict[str, Any]:
    """What the run history and metrics.json record about the gate."""
    return {
        "passed": all(c.passed for c in checks),
        "checks": [
            {
                "metric": c.metric,
                "kind": c.kind,
                "bound": c.bound,
                "value": c.value,
                "passed": c.passed,
            }
            for c in checks
        ],
    }


def enforce(checks: Sequence[Check]) -> None:
    """Raise GateFailed naming every failed bound (its metric, value and bound)."""
    failed = [c for c in checks if not c.passed]
    if failed:
        raise GateFailed("gate failed: " + "; ".join(str(c) for c in failed))


def exit_on_gate_failure(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call ``fn``; when the gate fails, print the failed bounds and exit 1 (CI: stop the build).

    Bad input stays exit code 2 (``run_reporting_errors``), so a pipeline can tell them apart.
    """
    try:
        return fn(*args, **kwargs)
    except GateFailed as err:
        from rich.console import Console

        Console(stderr=True).print(f"[bold red]{err}[/bold red]", highlight=False, soft_wrap=True)
        sys.exit(GateFailed.exit_code)
