"""Public names of a package without importing its modules (PEP 562).

Each package's ``__init__`` lists what it exports and where it lives; a name is imported from its
module when first used. So ``import trainer.serve`` needs no torch, ``python train.py --help``
does not load Lightning, and ``from trainer.checkpoint import load_checkpoint`` still works.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list]]:
    """``__getattr__`` and ``__dir__`` for ``package``: ``exports`` maps name -> submodule."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__
