"""Entry-point wrapper: a user's mistake is one red line and exit code 2, not a traceback."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from trainer.errors import TrainerError

T = TypeVar("T")


def full_errors() -> bool:
    return any(os.environ.get(v) == "1" for v in ("TRAINER_FULL_ERROR", "HYDRA_FULL_ERROR"))


def user_error_message(err: BaseException) -> str | None:
    """The message of a TrainerError, also when Hydra's instantiate wrapped it."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, TrainerError):
            return str(err)
        err = err.__cause__ or err.__context__
    return None


def run_reporting_errors(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call ``fn``; print a TrainerError (even wrapped) as one line and exit 2."""
    try:
        return fn(*args, **kwargs)
    except Exception as err:
        message = user_error_message(err)
        if message is None or full_errors():
            raise
        from rich.console import Console
        from rich.markup import escape

        Console(stderr=True).print(  # escaped: "data.train_classes=[good]" is no markup
            f"[bold red]error:[/bold red] {escape(message)}", highlight=False, soft_wrap=True
        )
        sys.exit(2)
