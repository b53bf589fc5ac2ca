"""The package's layers: no module imports from a layer above its own (lazy imports inside functions included).

From the bottom: the foundation (package data, constants, errors, geometry, images, machine, allocator, staging; then
cameras, userfiles, config), the kernels and their dispatch (ops), the models, checkpoints, then the users of models
(render, data, eval, train), the Python API, the viewer (a user of the API), and the command line on top. Modules of
one package may import each other.
"""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "aniportrait"
LAYERS = {
    "assets": 0,  # package data only (keyframes, the default model, the estimator)
    "constants": 0,
    "errors": 0,
    "images": 0,
    "machine": 0,
    "allocator": 0,
    "geometry": 0,
    "staging": 0,
    "cameras": 1,
    "userfiles": 1,
    "config": 1,
    "kernels": 2,
    "ops": 3,
    "models": 4,
    "checkpoint": 5,
    "convert": 6,
    "pretrained": 6,
    "render": 7,
    "data": 7,
    "eval": 8,
    "train": 9,
    "api": 10,
    "viewer": 11,
    "cli": 12,
    "__main__": 13,
}


def _module(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("aniportrait"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("aniportrait"))
    return found


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_top_level_module_has_a_layer():
    tops = {_part(_module(p)) for p in SRC.rglob("*.py")} - {""}
    assert tops <= set(LAYERS), f"give these a layer in LAYERS: {sorted(tops - set(LAYERS))}"


def test_no_module_imports_from_a_layer_above_its_own():
    modules = {_module(p) for p in SRC.rglob("*.py")}
    upward = []
    for path in SRC.rglob("*.py"):
        source = _module(path)
        for target in _imports(path) & modules:
            a, b = _part(source), _part(target)
            if a and b and a != b and LAYERS[b] > LAYERS[a]:
                upward.append(f"{source} -> {target}")
    assert not upward, "imports from a higher layer: " + ", ".join(sorted(upward))


def test_the_foundation_imports_only_the_foundation():
    for name in ("constants", "errors", "geometry"):
        imported = {_part(t) for t in _imports(SRC / f"{name}.py")} - {""}
        assert imported <= {"constants", "errors", "geometry"}, (name, imported)
