"""The package's layout holds: data flows one way (no import circle, function-level imports
included), no task imports another, and the files a bundle carries import nothing of ``trainer``."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "trainer"


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(path: Path) -> set[str]:
    """Every ``trainer...`` name imported anywhere in the file (functions included)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return {name for name in out if name.split(".")[0] == "trainer"}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {
        me: {
            t
            for t in imports(path)
            if t in mods and t != me and t != "trainer" and not me.startswith(t + ".")
        }
        for me, path in mods.items()
    }


def test_no_import_circle() -> None:
    deps = graph()
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        for nxt in sorted(deps[node]):
            assert nxt not in path, "import circle: " + " -> ".join(path[path.index(nxt) :] + [nxt])
            if nxt not in done:
                visit(nxt, [*path, nxt])
        done.add(node)

    for module in sorted(deps):
        visit(module, [module])


def test_no_task_imports_another_task() -> None:
    for me, deps in graph().items():
        if me.startswith("trainer.tasks."):
            assert not [d for d in deps if d.startswith("trainer.tasks.")], me


def test_the_bundle_runtime_imports_nothing_of_the_package() -> None:
    for name in ("score", "server"):
        assert not imports(PACKAGE / "export" / "runtime" / f"{name}.py"), name


@pytest.mark.parametrize(
    "package", [m for m in sorted(modules()) if modules()[m].name == "__init__.py"]
)
def test_every_package_states_its_public_api(package: str) -> None:
    module = importlib.import_module(package)
    assert module.__doc__ and hasattr(module, "__all__"), package
    for name in module.__all__:
        assert getattr(module, name, None) is not None or importlib.import_module(
            f"{package}.{name}"
        )
