"""The codebase's shape: layered imports without cycles, short files and functions.

* the import contract of ``pyproject.toml`` (``[tool.importlinter]``: one
  layers contract, top to bottom), checked by import-linter -- function-level
  (lazy) imports count as much as module-level ones;
* no import cycle between any two modules (grimp, import-linter's graph);
  ``if TYPE_CHECKING:`` imports (annotations only) do not count;
* every module of ``simulator``, ``devices`` and ``adc_calibration`` sits in a
  layer of the contract, so a new module cannot escape it;
* no file over :data:`MAX_FILE_LINES` lines and no function over
  :data:`MAX_FUNCTION_LINES` lines in those packages.

Known violations being fixed are listed in the allowlists below; an entry
that is no longer needed fails the test too, so the lists only shrink.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

pytest.importorskip("importlinter.cli", reason="import-linter is a dev dependency")
grimp = pytest.importorskip("grimp")

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("simulator", "devices", "adc_calibration")
#: packages that only hold layers (their __init__ imports nothing)
CONTAINERS = {"simulator", "simulator.io"}
MAX_FILE_LINES = 600
MAX_FUNCTION_LINES = 80

# issue 20: being split by another engineer -- direct imports "importer -> imported" that break the layers
IMPORT_ALLOWLIST: set[str] = set()
# issue 20: being split by another engineer -- import cycles, as sorted module lists
CYCLE_ALLOWLIST: set[tuple[str, ...]] = set()
# issue 20: being split by another engineer -- files over MAX_FILE_LINES
FILE_ALLOWLIST: set[str] = set()
# issue 20: being split by another engineer -- functions over MAX_FUNCTION_LINES, as "file::name"
FUNCTION_ALLOWLIST: set[str] = set()


def _importlinter_config() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["tool"]["importlinter"]


def _layer_modules(contract: dict) -> list[str]:
    return [m.strip() for layer in contract["layers"] for m in layer.replace("|", ":").split(":")]


def _python_files() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def _stale(allowlist: set, found: set, name: str) -> str:
    gone = sorted(allowlist - found)
    return f"fixed, remove from {name} in tests/test_architecture.py: {gone}" if gone else ""


def _write_ini(config: dict, ignore: set[str], path: Path) -> Path:
    """The pyproject contract as an import-linter INI file, the allowlist added to every contract's ignore_imports."""
    lines = ["[importlinter]", "root_packages =", *(f"    {p}" for p in config["root_packages"]),
             f"exclude_type_checking_imports = {config.get('exclude_type_checking_imports', False)}"]
    for contract in config["contracts"]:
        lines += [f"[importlinter:contract:{contract['id']}]", f"name = {contract['name']}", f"type = {contract['type']}",
                  "layers =", *(f"    {layer}" for layer in contract["layers"])]
        ignored = sorted(set(contract.get("ignore_imports", [])) | ignore)
        if ignored:
            lines += ["ignore_imports =", *(f"    {i}" for i in ignored),
                      "unmatched_ignore_imports_alerting = error"]  # a stale allowlist entry breaks the contract
    path.write_text("\n".join(lines) + "\n")
    return path


def test_import_contract_is_kept(tmp_path):
    # In a subprocess: import-linter disables every existing logger of the process it runs in, which would
    # silence the log assertions of the tests that run after this one in the same worker.
    ini = _write_ini(_importlinter_config(), IMPORT_ALLOWLIST, tmp_path / "importlinter.ini")
    script = ("import sys; from importlinter import cli; "
              f"sys.exit(cli.lint_imports(config_filename={str(ini)!r}, no_cache=True))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_module_is_in_a_layer():
    layers = [m for contract in _importlinter_config()["contracts"] for m in _layer_modules(contract)]
    graph = grimp.build_graph(*PACKAGES, exclude_type_checking_imports=True)
    outside = sorted(m for m in graph.modules
                     if m not in CONTAINERS and not any(m == layer or m.startswith(layer + ".") for layer in layers))
    assert not outside, f"modules in no layer of [tool.importlinter] in pyproject.toml: {outside}"


def test_no_import_cycles():
    graph = grimp.build_graph(*PACKAGES, exclude_type_checking_imports=True)  # function-level imports included
    groups: list[set[str]] = []  # modules on a common cycle (strongly connected), merged
    for importer in graph.modules:
        for imported in graph.find_modules_directly_imported_by(importer):
            chain = graph.find_shortest_chain(importer=imported, imported=importer)
            if chain:
                group = set(chain)
                for other in [g for g in groups if g & group]:
                    groups.remove(other)
                    group |= other
                groups.append(group)
    cycles = {tuple(sorted(g)) for g in groups}
    new = sorted(cycles - CYCLE_ALLOWLIST)
    assert not new, "import cycles: " + "; ".join(" <-> ".join(c) for c in new)
    stale = _stale(CYCLE_ALLOWLIST, cycles, "CYCLE_ALLOWLIST")
    assert not stale, stale


def _sizes() -> tuple[dict[str, int], dict[str, int]]:
    """(lines per file, lines per function as "file::name") over the packages."""
    files: dict[str, int] = {}
    functions: dict[str, int] = {}
    for path in _python_files():
        rel = path.relative_to(ROOT).as_posix()
        src = path.read_text(encoding="utf-8")
        files[rel] = src.count("\n")
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                key = f"{rel}::{node.name}"
                functions[key] = max(functions.get(key, 0), node.end_lineno - node.lineno + 1)
    return files, functions


def _check_sizes(sizes: dict[str, int], limit: int, allowlist: set[str], what: str, name: str) -> None:
    long = {f for f, n in sizes.items() if n > limit}
    new = sorted(f"{f} ({sizes[f]} lines)" for f in long - allowlist)
    assert not new, f"{what} over {limit} lines: {new}"
    stale = _stale(allowlist, long, name)
    assert not stale, stale


def test_no_long_files():
    _check_sizes(_sizes()[0], MAX_FILE_LINES, FILE_ALLOWLIST, "files", "FILE_ALLOWLIST")


def test_no_long_functions():
    _check_sizes(_sizes()[1], MAX_FUNCTION_LINES, FUNCTION_ALLOWLIST, "functions", "FUNCTION_ALLOWLIST")
