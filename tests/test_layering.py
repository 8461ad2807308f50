"""The floors of the package: the data model stands below every stage that uses it, io below the data model.

Read from the source with ``ast`` (nothing is imported), so an import inside a function counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "rerank_audit"
# The stages that read the data model: none of them may be imported from below.
STAGES = ("explain", "probe", "training", "evaluation", "models", "retrieval", "rerank")


def imported_modules(source: str, package: str) -> list[tuple[int, str]]:
    """(line, dotted module) of every import in ``source``, a module of ``package`` ("rerank_audit.data");
    ``from a import b`` counts as ``a.b``, relative imports resolved."""
    parts = package.split(".")
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = parts[: len(parts) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def offending(paths, forbidden: tuple[str, ...]) -> list[str]:
    """``file:line module`` for each import of ``paths`` that is a forbidden module or lies inside one."""
    found = []
    for path in paths:
        package = ".".join(["rerank_audit", *path.relative_to(PACKAGE).parent.parts])
        found += [
            f"{path.relative_to(PACKAGE.parent)}:{line} {module}"
            for line, module in imported_modules(path.read_text(encoding="utf-8"), package)
            if any(module == name or module.startswith(name + ".") for name in forbidden)
        ]
    return found


def test_the_data_layer_imports_no_stage():
    stages = tuple(f"rerank_audit.{stage}" for stage in STAGES)
    found = offending(sorted((PACKAGE / "data").glob("*.py")), stages)
    assert not found, f"data/ must stand below the stages that use it; it imports: {found}"


def test_io_imports_neither_the_data_layer_nor_a_stage():
    forbidden = ("rerank_audit.data", *(f"rerank_audit.{stage}" for stage in STAGES))
    found = offending([PACKAGE / "io.py"], forbidden)
    assert not found, f"io.py stands below data/; it imports: {found}"


def test_imports_are_read_whatever_their_form():
    """Absolute, relative, ``from package import module`` and function-local imports are all seen."""
    source = (
        "import rerank_audit.explain.measures\n"
        "from rerank_audit import probe\n"
        "from ..training import trainers\n"
        "def f():\n"
        "    from .measures import columns\n"
    )
    assert imported_modules(source, "rerank_audit.data") == [
        (1, "rerank_audit.explain.measures"), (2, "rerank_audit.probe"), (3, "rerank_audit.training.trainers"),
        (5, "rerank_audit.data.measures.columns"),
    ]  # fmt: skip
