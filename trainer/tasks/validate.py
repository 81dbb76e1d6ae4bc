"""``validate(cfg)``: check a dataset, or new data against a model's data contract.

What ``scripts/validate_data.py`` does (configs/validate.yaml): the data config names the images
(``data=folder data.root=DIR``, or ``data=pcb``, whose boards are generated when missing); without
``against`` every check of ``trainer.data.checks.validation`` runs and the policy
(``validation``) decides what fails; with ``against=RUN_FOLDER|CHECKPOINT|data_contract.json`` the
images are tested for drift against the model's data contract. Both print a Rich table and write
a JSON report (``report``); files are only read. Returns the exit code: 0 passed (or "fits"), 1 a
finding fails the policy (or "retrain"). Bad input raises a ``TrainerError`` (exit code 2).

It reads the data config rather than instantiating the data module, so that it does not import
Lightning and torch (8 s).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from trainer.errors import ConfigError

__all__ = ["dataset_root", "validate"]


def dataset_root(data: DictConfig) -> Path:
    """The folder of images a data config names, generating the boards if they are missing."""
    if data.get("root") is None:
        raise ConfigError("data.root: missing; give data.root=/path/to/images")
    root = Path(str(data.root)).expanduser()
    if "generator" not in data:
        return root
    from trainer.data.pcb import PCBSpec, generate_dataset, generated_folder

    try:
        spec = PCBSpec(**OmegaConf.to_container(data.generator, resolve=True))
    except (TypeError, ValueError) as err:
        raise ConfigError(f"data.generator: {err}") from err
    return generate_dataset(generated_folder(root, spec), spec)


def print_findings(report: Any, max_rows: int) -> None:
    """The summary and the findings of a ``ValidationReport``, ``max_rows`` rows per check."""
    console = Console()
    s = report.summary
    table = Table(title=f"dataset {report.root}", show_header=False)
    table.add_column("", style="cyan")
    table.add_column("")
    table.add_row("images", f"{s['images']} ({s['readable']} readable) in {s['seconds']} s")
    table.add_row("classes", ", ".join(s["class_names"]))
    for split, counts in s["counts"].items():
        table.add_row(f"  {split}", ", ".join(f"{c} {n}" for c, n in counts.items()))
    table.add_row("imbalance (train)", f"{s['imbalance_ratio']:.2f}x")
    table.add_row("modes", ", ".join(f"{m} {n}" for m, n in s["modes"].items()))
    table.add_row("formats", ", ".join(f"{m} {n}" for m, n in s["formats"].items()))
    if s["sizes"]:
        z = s["sizes"]
        table.add_row(
            "sizes",
            f"w {z['width'][0]}-{z['width'][1]}, h {z['height'][0]}-{z['height'][1]}, "
            f"aspect {z['aspect'][0]}-{z['aspect'][1]}, {z['distinct']} distinct",
        )
    table.add_row("exact duplicate groups", str(s["duplicate_groups"]))
    if s["near_duplicate_pairs"] is not None:
        table.add_row("near-duplicate pairs", str(s["near_duplicate_pairs"]))
    console.print(table)
    if report.findings:
        findings = Table(title="findings")
        for name in ("severity", "check", "path", "reason"):
            findings.add_column(name, overflow="fold")
        shown: dict[str, int] = {}
        for f in sorted(report.findings, key=lambda f: (f.severity != "fail", f.check)):
            shown[f.check] = shown.get(f.check, 0) + 1
            if shown[f.check] <= max_rows:
                style = "bold red" if f.severity == "fail" else "yellow"
                findings.add_row(
                    f"[{style}]{f.severity}[/{style}]", f.check, f.path or "-", f.reason
                )
        for check, n in shown.items():
            if n > max_rows:
                findings.add_row("", check, "...", f"and {n - max_rows} more (see the JSON report)")
        console.print(findings)
    if report.failed:
        failing = sorted({f.check for f in report.findings if f.severity == "fail"})
        console.print(
            f"[bold red]FAILED[/bold red]: {s['fail']} finding(s) fail the policy "
            f"({', '.join(failing)}); {s['warn']} warning(s)"
        )
    else:
        console.print(f"[bold green]PASSED[/bold green] with {s['warn']} warning(s)")


def print_drift(report: Any, source: str) -> None:
    """The KS tests, problems and verdict of a ``DriftReport`` against the contract ``source``."""
    console = Console()
    if report.tests:
        table = Table(title=f"{report.test} (alpha {report.alpha:g}) against {source}")
        for name in ("feature", "KS distance", "p-value", "threshold", "shift (ref. std)", "drift"):
            table.add_column(name, justify="right")
        for t in report.tests:
            table.add_row(
                t["feature"],
                f"{t['statistic']:.3f}",
                f"{t['p_value']:.2e}",
                f"{t['threshold']:.2e}",
                f"{t['shift_in_std']:+.2f}",
                "[bold red]yes[/bold red]" if t["drift"] else "no",
            )
        console.print(table)
    for line in report.problems:
        console.print(f"[bold red]problem[/bold red]: {line}", soft_wrap=True)
    for line in report.warnings:
        console.print(f"[yellow]warning[/yellow]: {line}", soft_wrap=True)
    colour = "green" if report.fits else "red"
    console.print(f"[bold {colour}]{report.summary()}[/bold {colour}]", soft_wrap=True)


def write_json(payload: dict[str, Any], path: str) -> None:
    """Write the JSON report (its folder created) and say where."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=1))
    print(f"Report: {out}")


def validate(cfg: DictConfig) -> int:
    """Validate ``cfg.data`` under ``cfg.validation``, or compare it with ``cfg.against``; the
    exit code (0 passed or fits, 1 fails or retrain)."""
    from trainer.data.checks.policy import Policy

    policy = Policy.from_config(OmegaConf.to_container(cfg.validation, resolve=True))
    root = dataset_root(cfg.data)
    if cfg.get("against"):
        from trainer.data.checks.contract import load_contract
        from trainer.data.checks.drift import check_dataset_against

        contract = load_contract(cfg.against)
        report = check_dataset_against(contract, root, policy)
        print_drift(report, str(cfg.against))
        write_json({"root": str(root), "against": str(cfg.against), **report.to_dict()}, cfg.report)
        return 0 if report.fits else 1
    from trainer.data.checks.validation import validate_dataset

    report = validate_dataset(
        root,
        val_fraction=cfg.data.get("val_fraction", 0.15),
        test_fraction=cfg.data.get("test_fraction", 0.15),
        split_seed=cfg.data.get("split_seed", 0),
        train_classes=cfg.data.get("train_classes"),
        policy=policy,
        perceptual=cfg.get("perceptual", True),
    )
    print_findings(report, int(cfg.get("max_rows", 20)))
    write_json(report.to_dict(), cfg.report)
    return 1 if report.failed else 0
