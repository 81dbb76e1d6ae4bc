"""Where a model came from: code version, command and time, stored with every checkpoint."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from trainer.utils.clock import now_utc


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def lineage(repo: str | Path) -> dict[str, Any]:
    """Git commit and dirty flag of ``repo`` (None outside git), command line and UTC time."""
    repo = Path(repo)
    commit = _git(["rev-parse", "HEAD"], repo)
    status = _git(["status", "--porcelain", "--untracked-files=no"], repo) if commit else None
    return {
        "git_commit": commit,
        "git_dirty": bool(status) if status is not None else None,
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "created_utc": now_utc(),
    }
