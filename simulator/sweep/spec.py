"""Sweep definitions: ``--param NAME=VALUES`` parsing, grid/zip points, validation.

VALUES may be written as

- a list: ``4,6,8`` or ``'a','b'`` (each item parsed with
  :func:`simulator.config.parse_value`, so TOML syntax works: ``[-1,1],[-2,2]``);
- an integer range, inclusive: ``0:9`` (step 1, or -1 when descending) or ``0:8:2``;
- a linear or logarithmic range of N values, ends included:
  ``0:1:lin:11``, ``1e-3:1e-1:log:5``;
- a file: ``@values.txt``, one value per line (blank lines and ``#`` comments skipped).

Several parameters form a grid (:func:`itertools.product`, the first parameter
varying slowest); with ``zip=True`` they are paired point by point and must
have equal lengths. Every point is validated as a whole config before anything
runs (:func:`resolve_points`).
"""
from __future__ import annotations

import builtins
import difflib
import itertools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from simulator.config import LAYER_KEYS, Config, parse_value
from simulator.errors import ConfigError, XbarsimError


class SweepError(XbarsimError, ValueError):
    """A sweep definition, its output folder or its cluster is unusable."""


#: config keys that cannot be swept, with what to do instead
_NOT_SWEEPABLE = {
    "seed": "every point uses the same base seed; set it with --seed (run i uses seed + i)",
    "Nruns": "the number of runs is the same for every point; set it with --set Nruns=N",
    "layers": "sweep a per-layer key as layers.<layer name>.<key>",
    "source": "it is not a parameter",
}

#: top-level keys that may be swept
SWEEPABLE_KEYS = frozenset(k for k in Config.model_fields if k not in _NOT_SWEEPABLE)

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_RANGE2 = re.compile(rf"^({_NUM}):({_NUM})$")
_RANGE3 = re.compile(rf"^({_NUM}):({_NUM}):({_NUM})$")
_RANGEN = re.compile(rf"^({_NUM}):({_NUM}):(lin|log):(\S+)$", re.IGNORECASE)
_INT = re.compile(r"^[-+]?\d+$")


@dataclass(frozen=True)
class Param:
    """One swept parameter: its config key, its values and how they were written."""

    name: str
    values: tuple
    scale: str = "list"  # "list", "int", "lin", "log" or "file" (used to pick a log axis)
    text: str = ""

    def __post_init__(self):
        object.__setattr__(self, "values", tuple(self.values))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "values": list(self.values), "scale": self.scale}


#: default largest number of sweep points (grid size) run without confirmation (``--max-points``)
MAX_POINTS = 10_000
#: largest number of values one --param range may expand to
MAX_VALUES = 1_000_000


@dataclass
class SweepSpec:
    """Parameters to sweep and how to combine them (at most ``max_points`` points)."""

    params: list[Param]
    zip: bool = False
    max_points: int = MAX_POINTS
    points: list[dict[str, Any]] = field(init=False)

    def __post_init__(self):
        if not self.params:
            raise SweepError("a sweep needs at least one --param NAME=VALUES")
        names = [p.name for p in self.params]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise SweepError(f"--param {dup[0]} is given more than once; list all its values in one --param")
        # count before building anything: a typo like ntest=1:1000000 must not start a million-point job
        count = len(self.params[0].values) if self.zip else math.prod(len(p.values) for p in self.params)
        if count > self.max_points:
            sizes = " x ".join(f"{len(p.values)} ({p.name})" for p in self.params)
            raise SweepError(f"the sweep has {count} points ({sizes}), more than --max-points {self.max_points}; "
                             f"pass --max-points {count} to run it")
        self.points = make_points(self.params, zip=self.zip)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def label(self, k: int) -> str:
        """``adc_bits=4, dac_bits=8`` for point ``k``."""
        return ", ".join(f"{n}={_short(v)}" for n, v in self.points[k].items())


def _short(v: Any) -> str:
    return repr(v) if isinstance(v, str) else str(v)


# ---------------------------------------------------------------- names
def check_name(name: str, where: str = "--param") -> str:
    """Return ``name`` if it is a sweepable config key, else raise ConfigError with a suggestion."""
    name = name.strip()
    if not name:
        raise ConfigError(f"{where}: missing parameter name (expected NAME=VALUES)")
    parts = name.split(".")
    if parts[0] == "layers":  # layer names may hold dots (torch qualified names): the key is the last part
        if len(parts) < 3 or not all(parts[1:]):
            raise ConfigError(f"{where} {name}: per-layer parameters are written layers.<layer name>.<key>")
        key = parts[-1]
        if key not in LAYER_KEYS:
            raise ConfigError(f"{where} {name}: {key!r} is not a per-layer parameter{_suggest(key, LAYER_KEYS)}")
        return name
    if len(parts) != 1:
        raise ConfigError(f"{where} {name}: expected a parameter name or layers.<layer name>.<key>")
    if name in _NOT_SWEEPABLE:
        raise ConfigError(f"{where} {name}: cannot be swept; {_NOT_SWEEPABLE[name]}")
    if name not in SWEEPABLE_KEYS:
        raise ConfigError(f"{where} {name}: unknown parameter{_suggest(name, SWEEPABLE_KEYS | LAYER_KEYS)}")
    return name


def _suggest(key: str, valid: Iterable[str]) -> str:
    lower = {v.lower(): v for v in valid}
    if key.lower() in lower:
        match = [lower[key.lower()]]
    else:
        match = difflib.get_close_matches(key, sorted(valid), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


# ---------------------------------------------------------------- values
def _clean(x: float) -> float:
    """Round away floating-point noise of linspace/geomspace (12 significant digits)."""
    return float(f"{x:.12g}")


def _split_list(text: str) -> list[str]:
    """Split on commas outside brackets, braces and quotes."""
    items, depth, quote, cur = [], 0, None, []
    for ch in text:
        if quote:
            cur.append(ch)
            if ch == quote:
                quote = None
            continue
        if ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    items.append("".join(cur))
    return [s.strip() for s in items]


def parse_values(text: str, *, where: str = "--param", base_dir: str | Path | None = None) -> tuple[list[Any], str]:
    """Parse a VALUES string into ``(values, scale)``; see the module docstring for the forms."""
    text = text.strip()
    if not text:
        raise SweepError(f"{where}: no values given")
    if text.startswith("@"):
        return _values_from_file(text[1:], where=where, base_dir=base_dir), "file"
    m = _RANGEN.match(text)
    if m:
        a, b, mode, n_text = float(m[1]), float(m[2]), m[3].lower(), m[4]
        if not _INT.match(n_text) or int(n_text) < 1:
            raise SweepError(f"{where}: {text!r}: the number of values must be a positive integer, got {n_text!r}")
        n = int(n_text)
        if n > MAX_VALUES:
            raise SweepError(f"{where}: {text!r}: {n} values, more than the {MAX_VALUES} one parameter may take")
        if n == 1 and a != b:
            raise SweepError(f"{where}: {text!r}: a range from {m[1]} to {m[2]} needs at least 2 values")
        if mode == "log":
            if a <= 0 or b <= 0:
                raise SweepError(f"{where}: {text!r}: a log range needs positive ends")
            la, lb = math.log(a), math.log(b)
            vals = [a] if n == 1 else [math.exp(la + (lb - la) * i / (n - 1)) for i in range(n)]
            if n > 1:
                vals[0], vals[-1] = a, b
        else:
            vals = [a] if n == 1 else [a + (b - a) * i / (n - 1) for i in range(n)]
            if n > 1:
                vals[-1] = b
        return [_clean(v) for v in vals], mode
    m = _RANGE2.match(text) or _RANGE3.match(text)
    if m:
        ends = list(m.groups())
        if not all(_INT.match(e) for e in ends):
            raise SweepError(
                f"{where}: {text!r}: ranges A:B and A:B:STEP take integers; "
                f"write a float range as A:B:lin:N or A:B:log:N"
            )
        a, b = int(ends[0]), int(ends[1])
        step = int(ends[2]) if len(ends) == 3 else (1 if b >= a else -1)
        if step == 0 or (b - a) * step < 0:
            raise SweepError(f"{where}: {text!r}: step {step} does not lead from {a} to {b}")
        if abs(b - a) // abs(step) + 1 > MAX_VALUES:
            raise SweepError(f"{where}: {text!r}: {abs(b - a) // abs(step) + 1} values, more than the {MAX_VALUES} "
                             "one parameter may take")
        return list(range(a, b + (1 if step > 0 else -1), step)), "int"
    items = _split_list(text)
    if any(not s for s in items):
        raise SweepError(f"{where}: {text!r}: empty item in the value list")
    return [parse_value(s) for s in items], "list"


def _values_from_file(name: str, *, where: str, base_dir: str | Path | None) -> list[Any]:
    path = Path(name).expanduser()
    if base_dir is not None and not path.is_absolute():
        path = Path(base_dir) / path
    if not path.is_file():
        raise SweepError(f"{where}: values file {str(path)!r} not found")
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise SweepError(f"{where}: cannot read values file {str(path)!r} ({exc})") from None
    vals = [parse_value(s.strip()) for s in lines if s.strip() and not s.strip().startswith("#")]
    if not vals:
        raise SweepError(f"{where}: values file {str(path)!r} holds no values")
    return vals


def parse_param(text: "str | Param", *, base_dir: str | Path | None = None) -> Param:
    """Parse ``NAME=VALUES`` into a :class:`Param` (the name is checked against the config schema)."""
    if isinstance(text, Param):
        check_name(text.name)
        return text
    if "=" not in text:
        raise SweepError(f"--param {text!r}: expected NAME=VALUES, e.g. adc_bits=4,6,8 or noise_level=0:9")
    name, values = text.split("=", 1)
    name = check_name(name)
    vals, scale = parse_values(values, where=f"--param {name}", base_dir=base_dir)
    return Param(name, tuple(vals), scale, text)


def make_points(params: Sequence[Param], *, zip: bool = False) -> list[dict[str, Any]]:
    """The list of ``{name: value}`` overrides, grid (product) or zipped."""
    names = [p.name for p in params]
    if zip:
        lengths = {p.name: len(p.values) for p in params}
        if len(set(lengths.values())) > 1:
            desc = ", ".join(f"{n} has {k}" for n, k in lengths.items())
            raise SweepError(f"--zip needs the same number of values for every parameter; {desc}")
        combos = list(builtins.zip(*(p.values for p in params)))
    else:
        combos = list(itertools.product(*(p.values for p in params)))
    return [dict(builtins.zip(names, c)) for c in combos]


# ---------------------------------------------------------------- validation
def config_value(cfg: Config, name: str) -> Any:
    """The (validated, coerced) value of ``name`` / ``layers.L.key`` in ``cfg``, JSON-able."""
    d = cfg.to_dict()
    parts = name.split(".")
    if parts[0] == "layers":
        return d["layers"].get(".".join(parts[1:-1]), {}).get(parts[-1])
    return d[name]


def resolve_points(base: Config, spec: SweepSpec, *, seed: int, max_reported: int = 3) -> list[Config]:
    """Validate every point of ``spec`` as a whole config; return the point configs.

    Each point is ``base`` with the point's overrides and ``seed``. If any point
    fails validation, raise one :class:`ConfigError` naming the point, its
    values and the problem (plus how many other points fail), before anything runs.
    """
    configs, failures = [], []
    for k, point in enumerate(spec.points):
        try:
            configs.append(base.with_overrides({**point, "seed": seed}))
        except ConfigError as exc:
            failures.append((k, str(exc)))
    if failures:
        k, msg = failures[0]
        src = base.source
        if src and msg.startswith(f"{src}: "):
            msg = msg[len(src) + 2:]
        text = f"sweep point {k} of {len(spec.points)} ({spec.label(k)}) is invalid: {msg}"
        if len(failures) > 1:
            others = [str(f[0]) for f in failures[1:]]
            shown = ", ".join(others[:max_reported]) + (", ..." if len(others) > max_reported else "")
            text += f"; {len(failures) - 1} more invalid point(s): {shown}"
        raise ConfigError(text + "; nothing was run")
    return configs


def point_values(configs: Sequence[Config], spec: SweepSpec) -> list[dict[str, Any]]:
    """The swept values of every point as the validated configs hold them (e.g. 4.0 -> 4 for ints)."""
    return [{n: config_value(cfg, n) for n in spec.names} for cfg in configs]


def parse_set(items: Iterable[str]) -> dict[str, Any]:
    """``["key=value", ...]`` (``--set``) into an overrides dict."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        key, value = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"--set {item!r}: missing key")
        out[key] = parse_value(value.strip())
    return out


def describe_values(values: Sequence[Any], limit: int = 6) -> str:
    vals = [_short(v) for v in values]
    if len(vals) > limit:
        vals = vals[: limit - 2] + ["...", vals[-1]]
    return ", ".join(vals)


def as_params(items: Iterable["str | Param | tuple"], *, base_dir=None) -> list[Param]:
    """Accept ``"NAME=VALUES"`` strings, :class:`Param` objects or ``(name, values)`` pairs."""
    out = []
    for item in items:
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
            name, vals = item
            if isinstance(vals, str):
                out.append(parse_param(f"{name}={vals}", base_dir=base_dir))
            else:
                out.append(Param(check_name(name), tuple(vals), "list", ""))
        else:
            out.append(parse_param(item, base_dir=base_dir))
    return out


def params_from_mapping(m: Mapping[str, Any]) -> list[Param]:
    return as_params(m.items())
