"""The package's layers import only the layers above them (see the README's library map)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gru_jax"

# layer -> the gru_jax packages it may import (besides itself)
ALLOWED = {
    "core": set(),
    "data": {"core"},
    "nn": {"core"},
    "infer": {"core", "data", "nn"},
    "eval": {"core", "data", "nn", "infer"},
    "train": {"core", "data", "nn", "infer", "eval"},
    "synth": {"core"},
    "cli": {"core", "data", "nn", "infer", "eval", "train", "synth"},
}
JAX_FREE = ("core", "data", "synth")  # NumPy-only: usable on hosts without an accelerator stack
JAX_STACK = ("jax", "jaxlib", "flax", "optax", "orbax")


def _imported_gru_jax_packages(path: Path) -> set[str]:
    """Top-level gru_jax packages a module imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "gru_jax" and len(parts) > 1:
                found.add(parts[1])
    return found


def test_every_module_belongs_to_a_layer():
    top = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir() if p.name != "__pycache__"}
    assert top - {"__init__"} == set(ALLOWED)


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layer_imports_only_the_layers_above_it(layer):
    bad = {}
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        wrong = _imported_gru_jax_packages(path) - ALLOWED[layer] - {layer}
        if wrong:
            bad[str(path.relative_to(PACKAGE))] = sorted(wrong)
    assert not bad, f"{layer} may import only {sorted(ALLOWED[layer])}: {bad}"


def test_jax_free_layers_import_no_jax_even_indirectly():
    modules = sorted(
        ".".join(("gru_jax", *p.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(
            ".__init__"
        )
        for layer in JAX_FREE
        for p in (PACKAGE / layer).rglob("*.py")
        if p.name != "__main__.py"
    )
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {JAX_STACK!r}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", f"{JAX_FREE} pulled in {out.stdout.strip()}"
