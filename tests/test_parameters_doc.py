"""docs/parameters.md is generated from the config schema and every parameter is documented with its units."""
from __future__ import annotations

import importlib.util
import typing
from pathlib import Path

from simulator.config import Config

ROOT = Path(__file__).resolve().parents[1]


def _generator():
    spec = importlib.util.spec_from_file_location("gen_parameters_doc", ROOT / "scripts" / "gen_parameters_doc.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _numeric(annotation) -> bool:
    """True for int/float fields (also inside Optional/Union/list/tuple), not for bool."""
    if annotation in (int, float):
        return True
    return any(_numeric(a) for a in typing.get_args(annotation) if a is not bool)


def test_parameters_doc_is_up_to_date():
    gen = _generator()
    assert (ROOT / "docs" / "parameters.md").read_text() == gen.render(), (
        "docs/parameters.md is stale: run python scripts/gen_parameters_doc.py")


def test_stale_doc_is_detected(tmp_path, monkeypatch, capsys):
    gen = _generator()
    stale = tmp_path / "parameters.md"
    stale.write_text(gen.render().replace("| `adc_bits` |", "| `adc_bitz` |"))
    monkeypatch.setattr(gen, "DOC", stale)
    monkeypatch.setattr(gen, "ROOT", tmp_path)
    assert gen.main(["--check"]) == 1 and "stale" in capsys.readouterr().err
    stale.write_text(gen.render())
    assert gen.main(["--check"]) == 0


def test_every_parameter_has_a_description_and_numbers_have_units():
    gen = _generator()
    missing, no_units = [], []
    for name, f in Config.model_fields.items():
        if name in gen.INTERNAL:
            continue
        if not (f.description or "").strip():
            missing.append(name)
        elif _numeric(f.annotation) and not gen.split_units(f.description)[1]:
            no_units.append(name)
    assert not missing, f"no description: {missing}"
    assert not no_units, f"numeric parameters without [units] in their description: {no_units}"


def test_doc_lists_ranges_units_and_witin_group():
    text = _generator().render()
    assert "| `adc_bits` | int | `0` | 0 <= x <= 32 | bits | yes |" in text
    assert "| `alpha_error` | float | `0.0` | x >= 0 | fraction of G_max or of G | yes |" in text
    witin = text.split("## witin")[1].split("\n## ")[0]
    for key in ("noise_level", "x_quant_bits", "scale_x", "handle_neg_in", "witin_mode", "noise_mode"):
        assert f"| `{key}` |" in witin
    for name in Config.model_fields:
        if name != "source":
            assert f"| `{name}` |" in text
