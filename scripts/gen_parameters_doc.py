"""Generate docs/parameters.md from the config schema (simulator/config/hardware.py and schema.py).

    python scripts/gen_parameters_doc.py           # rewrite docs/parameters.md
    python scripts/gen_parameters_doc.py --check   # exit 1 when docs/parameters.md is stale

Every key of :class:`simulator.config.Config` is listed with its type, default,
allowed range (the pydantic constraints ``ge``/``gt``/``le``/``lt`` and the
choices of ``Literal`` types), units (the ``[...]`` that ends its
description), whether ``[layers.<name>]`` may override it, and its description.
Keys are grouped by the ``# --- section ---`` comments of the schema's source;
sections of the same name in both classes (devices, witin) are merged.
"""
from __future__ import annotations

import argparse
import ast
import inspect
import re
import sys
import typing
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simulator.config import Config, HardwareParams  # noqa: E402
from simulator.config import hardware as hardware_module  # noqa: E402
from simulator.config import schema as schema_module  # noqa: E402

DOC = ROOT / "docs" / "parameters.md"
SECTION = re.compile(r"^\s*# --- (.+?) -*$")
UNITS = re.compile(r"\s*\[([^\[\]]+)\]\s*$")
#: schema fields that are not parameters
INTERNAL = {"source"}


def section_of_fields() -> dict[str, str]:
    """``{field name: section title}`` from the ``# --- title ---`` comments above the fields of the schema classes."""
    out: dict[str, str] = {}
    for module in (hardware_module, schema_module):
        out.update(_sections_in(inspect.getsource(module)))
    return out


def _sections_in(source: str) -> dict[str, str]:
    """``{field name: section title}`` of the HardwareParams / Config class defined in ``source``."""
    lines = source.splitlines()
    tree = ast.parse(source)
    out: dict[str, str] = {}
    for node in tree.body:
        if not (isinstance(node, ast.ClassDef) and node.name in ("HardwareParams", "Config")):
            continue
        current = "general"
        stmts = [s for s in node.body if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)]
        previous_end = node.lineno
        for st in stmts:
            for text in lines[previous_end : st.lineno - 1]:
                m = SECTION.match(text)
                if m:
                    current = m.group(1).strip()
            out[st.target.id] = current
            previous_end = st.end_lineno
    return out


def group_name(title: str) -> str:
    """The group a section title belongs to: the title without its parenthesis; every witin section is "witin"."""
    base = title.split("(")[0].strip()
    return "witin" if base.lower().startswith("witin") else base


def type_name(annotation) -> str:
    """A short readable type: ``int``, ``float or None``, ``one of "max", "granular"``, ``list[float]``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return "one of " + ", ".join(f'"{a}"' for a in args)
    if origin is typing.Union:
        parts = [type_name(a) for a in args if a is not type(None)]
        return " or ".join(parts) + (" or None" if type(None) in args else "")
    if origin is not None:
        inner = ", ".join(type_name(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    if annotation is typing.Any:
        return "any"
    name = getattr(annotation, "__name__", str(annotation))
    return "str" if name == "str" else name


def range_text(field) -> str:
    """The numeric constraints of a field as ``0 <= x <= 24`` (empty when none)."""
    bounds = {}
    for m in field.metadata:
        for attr in ("ge", "gt", "le", "lt"):
            v = getattr(m, attr, None)
            if v is not None:
                bounds[attr] = v
    lo = f"{bounds['ge']:g} <= " if "ge" in bounds else f"{bounds['gt']:g} < " if "gt" in bounds else ""
    hi = f" <= {bounds['le']:g}" if "le" in bounds else f" < {bounds['lt']:g}" if "lt" in bounds else ""
    if lo and not hi:  # "x >= 0" reads better than "0 <= x"
        return "x " + (">= " if "ge" in bounds else "> ") + lo.split(" ")[0]
    return f"{lo}x{hi}" if lo or hi else ""


def default_text(field) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
    else:
        value = field.default
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "None"
    return str(value)


def split_units(description: str) -> tuple[str, str]:
    """``("text", "units")`` from a description ending in ``[units]``; units ``""`` when it has none."""
    m = UNITS.search(description)
    return (description[: m.start()], m.group(1)) if m else (description, "")


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render() -> str:
    """The whole of docs/parameters.md."""
    sections = section_of_fields()
    groups: dict[str, list[str]] = {}
    for name in Config.model_fields:
        if name in INTERNAL:
            continue
        groups.setdefault(group_name(sections.get(name, "general")), []).append(name)
    out = [
        "# Configuration parameters",
        "",
        "<!-- generated by scripts/gen_parameters_doc.py from simulator/config/; do not edit by hand:",
        "     run `python scripts/gen_parameters_doc.py` (tests/test_parameters_doc.py fails when this file is stale) -->",
        "",
        "Every key of an inference config (TOML, JSON, dict or CrossSim-style module), "
        "as the schema in `simulator/config/` defines it. *Range* is what validation accepts "
        "(a value outside it is refused with one line naming the key); *units* are the "
        "units of the value; *per layer* keys may also be set in `[layers.<layer name>]` tables. "
        "Conductances are normalized (G_max = 1, G_min = 1/On_off_ratio), array inputs are "
        "normalized voltages (full scale = 1), *algorithmic units* are the layer's own values "
        "(see README, Conventions). Names without the `xbarsim:` mark are CrossSim's "
        "(manual Table 3.1; `docs/crosssim.md`); `witin:` keys are witin_nn's (`docs/witin.md`).",
        "",
        "Groups: " + ", ".join(f"[{g}](#{re.sub(r'[^a-z0-9 -]', '', g.lower()).replace(' ', '-')})" for g in groups),
        "",
    ]
    for group, names in groups.items():
        out += [f"## {group}", "", "| key | type | default | range | units | per layer | description |",
                "|---|---|---|---|---|---|---|"]
        for name in names:
            f = Config.model_fields[name]
            text, units = split_units(f.description or "")
            per_layer = "yes" if name in HardwareParams.model_fields else ""
            out.append(f"| `{name}` | {cell(type_name(f.annotation))} | `{cell(default_text(f))}` | "
                       f"{cell(range_text(f))} | {cell(units)} | {per_layer} | {cell(text.strip())} |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when docs/parameters.md differs from the schema")
    args = ap.parse_args(argv)
    text = render()
    if args.check:
        current = DOC.read_text() if DOC.exists() else ""
        if current != text:
            print(f"{DOC.relative_to(ROOT)} is stale: run python scripts/gen_parameters_doc.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(text)
    print(f"wrote {DOC.relative_to(ROOT)} ({len(Config.model_fields) - len(INTERNAL)} parameters)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
