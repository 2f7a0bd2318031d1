"""The whole config: :class:`Config` (hardware + run settings + per-layer overrides) and :func:`load_config`.

Validation (pydantic) rejects unknown keys with the closest valid name, wrong
types and out-of-range values, and incompatible combinations
(:mod:`simulator.config.checks`), each as one
:class:`~simulator.errors.ConfigError` line naming the file and the key.
"""
from __future__ import annotations

import copy
import difflib
import math
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping, Optional, Union

from pydantic import Field, ValidationError, field_validator, model_validator

from simulator.config.checks import check_combinations
from simulator.config.files import apply_overrides, dict_to_toml, read_config_file
from simulator.config.hardware import LAYER_KEYS, HardwareParams, LayerOverrides
from simulator.errors import ConfigError


class Config(HardwareParams):
    """A whole inference configuration (global values + per-layer overrides)."""

    # --- run (manual 3, 4.1) -------------------------------------------------
    Nruns: int = Field(
        1, ge=1, le=100000, description="Independent runs, each with freshly sampled programming errors (seed + "
        "i) [runs]")
    seed: Optional[int] = Field(
        None, ge=0, description="xbarsim: base seed; run i uses seed + i (None = a new random seed, recorded in "
        "the result) [integer]")
    useGPU: bool = Field(False, description="Run on a CUDA GPU through CuPy (extra 'gpu')")
    gpu_num: int = Field(0, ge=0, description="CUDA device index with useGPU [index]")
    task: str = Field(
        "digits", description="Dataset: digits (bundled), mnist, fashion, cifar10, cifar100, imagenet, or npz (a "
        "file named by dataset_path)")
    model_name: str = Field(
        "digits_cnn", description="Model: a bundled name (digits_cnn, digits_mlp, witin_digits) or a model file "
        "(our HDF5, Keras .h5, ONNX, .pt2); paths relative to the working directory")
    check: bool = Field(
        True, description="xbarsim: on loading model_name, prove the import against the model's own runtime "
        "(onnxruntime for ONNX, torch for torch programs) on seeded random inputs; false skips it")
    module: Optional[str] = Field(
        None, description="xbarsim: torch model class 'package.module:Class'; model_name is then its state_dict "
        "file (torch.save(model.state_dict(), path))")
    module_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="xbarsim: keyword arguments of the module class (with module)")
    input_shape: Optional[list[Annotated[int, Field(ge=1)]]] = Field(
        None, description="xbarsim: the torch model's input shape without the batch axis, in its own layout (e.g."
        " [3, 32, 32]); needed with module [elements per axis]")
    dataset_path: Optional[str] = Field(
        None, description="Dataset file or folder for task (npz: arrays x, y; relative to the config file)")
    ntest: int = Field(0, ge=0, description="Test images (0 = the whole test split) [images]")
    ntest_batch: int = Field(500, ge=0, description="Images loaded and simulated at a time (0 = all at once) [images]")
    nstart: int = Field(
        0, ge=0, description="Index of the first test image used (test split; ignored with randomSampling) [image"
        " index]")
    randomSampling: bool = Field(
        False, description="Draw the ntest test images at random (from seed) instead of the first ones")
    count_interval: int = Field(
        0, ge=0, description="Images between running-accuracy updates (0 = progress bar only) [images]")
    time_interval: bool = Field(False, description="Add the elapsed time to the running-accuracy updates")
    topk: Union[int, list[int]] = Field(
        1, description="Top-k accuracies reported: k or a list of k (1 is always reported) [classes]")

    @field_validator("topk")
    @classmethod
    def _check_topk(cls, v):
        ks = v if isinstance(v, list) else [v]
        if not ks or any(k < 1 for k in ks):
            raise ValueError(f"topk = {v!r}: expected k >= 1 (an integer or a non-empty list of them)")
        return v
    show_model_summary: bool = Field(False, description="Print the model's layers before the run")
    dataset_normalization: Literal["none", "unsigned_8b", "signed_8b"] = Field(
        "none", description="Pixel scaling applied on reading: none (as stored; the bundled digits are in [0, "
        "1]), unsigned_8b (x/255, for 0..255 pixels) or signed_8b (x/127.5 - 1)")
    subtract_pixel_mean: bool = Field(
        False, description="Subtract the training set's per-pixel mean from every image (CIFAR ResNets)")
    calibration_ntest: int = Field(
        0, ge=0, description="xbarsim: calibration images (0 = the whole calibration split, which never overlaps "
        "the test split) [images]")
    # --- network-level mapping -----------------------------------------------
    fold_batchnorm: bool = Field(
        True, description="Fold batch normalization into the preceding layer's weights and bias")
    ignoredLayerTypes: list[str] = Field(
        default_factory=lambda: ["Dropout", "GaussianNoise"], description="Layer types skipped at inference "
        "(Keras class names)")
    # --- devices (manual ch. 7) ----------------------------------------------
    On_off_ratio: float = Field(
        0.0, ge=0, description="G_max/G_min of the devices (0 = infinite, G_min = 0; else > 1) [ratio]")

    @field_validator("On_off_ratio")
    @classmethod
    def _check_ratio(cls, v):
        if 0 < v <= 1:
            raise ValueError(f"On_off_ratio must be 0 (infinite) or > 1, got {v}")
        return v

    t_drift: Union[float, list[float]] = Field(
        0.0, description="Time between programming and inference; a list (xbarsim): evaluate every time, "
        "ascending [days]")

    @field_validator("t_drift")
    @classmethod
    def _check_times(cls, v):
        times = v if isinstance(v, list) else [v]
        if not times:
            raise ValueError("t_drift = []: expected a number of days or a non-empty ascending list")
        if any((not math.isfinite(t)) or t < 0 for t in times):
            raise ValueError(f"t_drift = {v!r}: times must be finite and >= 0 (days)")
        if any(b <= a for a, b in zip(times, times[1:])):
            raise ValueError(f"t_drift = {v!r}: a list of times must be strictly ascending")
        return v

    device_path: Optional[str] = Field(
        None, description="xbarsim: folder with extra device-model modules (relative to the config file)")
    read_noise_mode: Literal["auto", "exact", "output"] = Field(
        "auto", description="xbarsim: read noise sampled per conductance (exact), at the column output (output; "
        "equal in distribution for Gaussian noise) or chosen by the model (auto)")
    # --- ADC calibration -------------------------------------------------------
    pct: Optional[float] = Field(
        None, gt=50, le=100, description="Percentile of the profiled array outputs the calibrated ADC range of "
        "bit-sliced weights covers (manual 9.3.1; None = the calibration's own) [percent]")
    profile_adc_biased: bool = Field(
        False, description="ReLU-aware ADC profiling: drop ADC inputs with y + b < 0 before a ReLU (manual 9.4)")
    calibration_file: Optional[str] = Field(
        None, description="xbarsim: calibrated ADC/DAC ranges file (.h5 from `xbarsim calibrate`, or CrossSim "
        ".npy; relative to the config file)")
    calibration_dir: str = Field(
        "calibration", description="xbarsim: default folder of calibration files, relative to the working directory")
    npy_adc_units: Literal["normalized", "algorithmic"] = Field(
        "normalized", description="xbarsim: units of (min, max) ADC limits in a .npy calibration_file: normalized"
        " (CrossSim 3) or algorithmic")
    dac_limits_file: Optional[str] = Field(
        None, description="xbarsim: CrossSim-style .npy input limits, one (min, max) row per layer [algorithmic units]")
    # --- conductance export (CrossSim 3) ---------------------------------------
    export_conductances: bool = Field(
        False, description="Write every array's programmed conductances to conductances_dir")
    conductances_dir: str = Field("conductances", description="Folder of exported conductances (one .npy per array)")
    # --- parasitics solver ---------------------------------------------------
    Verr_th: float = Field(
        2e-4, gt=0, lt=1, description="xbarsim: parasitic solver convergence threshold on the node voltage error "
        "[fraction of V_D, the full-scale input voltage]")
    parasitics_max_iter: int = Field(
        200, ge=1, le=100000, description="xbarsim: parasitic solver iteration bound [iterations]")
    # --- performance ---------------------------------------------------------
    x_par: int = Field(
        1, ge=1, description="CrossSim convolution parallelism along x; accepted, no effect (xbarsim batches "
        "every sliding window in one MVM) [copies]")
    y_par: int = Field(
        1, ge=1, description="CrossSim convolution parallelism along y; accepted, no effect (xbarsim batches "
        "every sliding window in one MVM) [copies]")
    memory_budget_mb: float = Field(512.0, gt=0, description="xbarsim: memory for one chunk of batched MVMs [MiB]")
    precision: Literal["auto", "float32", "float64"] = Field(
        "auto", description="xbarsim: arithmetic: auto (float32 when an ADC of <= 16 bits bounds the result, else"
        " float64), float32 or float64")
    # --- witin ---------------------------------------------------------------
    witin_mode: Literal["chip", "arrays"] = Field(
        "chip", description="xbarsim: witin layers with the chip's exact integer semantics (chip) or mapped onto "
        "conductance arrays (arrays)")
    # --- per layer -----------------------------------------------------------
    layers: dict[str, LayerOverrides] = Field(
        default_factory=dict, description="Per-layer overrides: [layers.<layer name>] tables of any per-layer "
        "parameter")

    # where the config came from, for error messages (not a parameter)
    source: str = Field("<dict>", exclude=True)

    @model_validator(mode="after")
    def _combinations(self) -> "Config":
        check_combinations(self, self, where="")
        for name in self.layers:
            merged = self.for_layer(name).model_dump()
            try:
                params = HardwareParams.model_validate(merged)
            except ValidationError as exc:
                err = exc.errors()[0]
                key = ".".join(str(p) for p in err["loc"])
                raise ValueError(f"layers.{name}.{key} = {err.get('input')!r}: {err['msg']}") from None
            check_combinations(params, self, where=f"layers.{name}.")
        return self

    # ------------------------------------------------------------------ API
    def for_layer(self, name: str) -> HardwareParams:
        """The hardware parameters of layer ``name`` (global values + its overrides)."""
        base = {k: getattr(self, k) for k in LAYER_KEYS}
        ov = self.layers.get(name)
        if ov is not None:
            base.update({k: v for k, v in ov.model_dump().items() if v is not None})
        return HardwareParams.model_construct(**base)

    @property
    def drift_times(self) -> list[float]:
        """``t_drift`` as a list of days (one entry when it is a number)."""
        return [float(t) for t in self.t_drift] if isinstance(self.t_drift, list) else [float(self.t_drift)]

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (TOML/JSON-able) of every parameter, per-layer overrides without unset keys."""
        d = self.model_dump(exclude={"layers", "source"})
        d["layers"] = {n: ov.model_dump(exclude_none=True) for n, ov in self.layers.items()}
        return d

    def with_overrides(self, overrides: Mapping[str, Any]) -> "Config":
        """A new validated Config with ``{"key": value, "layers.NAME.key": value}`` applied."""
        data = self.to_dict()
        apply_overrides(data, overrides)
        return load_config(data, name=self.source)

    def to_toml(self) -> str:
        return dict_to_toml(self.to_dict())


def _suggest(key: str, valid) -> str:
    match = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _format_error(err: Mapping[str, Any], data: Mapping[str, Any], source: str) -> str:
    loc = [str(p) for p in err["loc"]]
    # drop pydantic's union/type tags from the location
    loc = [p for p in loc if not p.startswith(("function-", "tuple[", "list[")) and p not in ("int", "float", "bool", "str")]
    key = ".".join(loc) if loc else "<config>"
    etype = err["type"]
    if etype == "extra_forbidden":
        valid = LAYER_KEYS if loc and loc[0] == "layers" else Config.model_fields
        return f"{source}: unknown key {key!r}{_suggest(loc[-1], valid)}"
    value = err.get("input")
    msg = err["msg"]
    if etype.startswith("literal_error"):
        return f"{source}: {key} = {value!r} is not allowed; {msg[0].lower() + msg[1:]}"
    if etype == "value_error" and "Value error, " in msg:
        text = msg.split("Value error, ", 1)[1]
        return f"{source}: {text}" if key == "<config>" else f"{source}: {key}: {text}"
    return f"{source}: {key} = {value!r}: {msg}"


def _literal_options(annotation) -> tuple[str, ...]:
    """The string values of a (possibly Optional) Literal annotation, else ()."""
    import typing

    if typing.get_origin(annotation) is Literal:
        return tuple(a for a in typing.get_args(annotation) if isinstance(a, str))
    out: tuple[str, ...] = ()
    for arg in typing.get_args(annotation):
        out += _literal_options(arg)
    return out


#: CrossSim spellings of device model names (CrossSim 3 value -> xbarsim model)
DEVICE_ALIASES = {"generic": "alpha", "pcmjoshi": "PCM_Joshi", "rrammilo": "RRAM_Milo"}
_DEVICE_KEYS = ("error_model", "noise_model", "drift_model")


def _normalize_values(data: dict[str, Any], fields) -> None:
    """Enumerated values case-insensitively (ONE_SIDED -> one_sided, balanced -> BALANCED), in place."""
    for key, value in list(data.items()):
        if not isinstance(value, str) or key not in fields:
            continue
        options = _literal_options(fields[key].annotation)
        if options and value not in options:
            low = {o.lower(): o for o in options}
            if value.strip().lower() in low:
                data[key] = low[value.strip().lower()]
        elif key in _DEVICE_KEYS and value.strip().lower() in DEVICE_ALIASES:
            data[key] = DEVICE_ALIASES[value.strip().lower()]
        elif key in ("adc_type", "dac_type"):
            from simulator.circuits.converters import ADC_MODELS, DAC_MODELS, canonical_name

            data[key] = canonical_name(value, ADC_MODELS if key == "adc_type" else DAC_MODELS)


def _normalize_keys(data: dict[str, Any]) -> dict[str, Any]:
    """Accept CrossSim spellings that differ only in type or letter case (tuples for topk, ONE_SIDED, ...)."""
    data = dict(data)
    if isinstance(data.get("topk"), tuple):
        data["topk"] = list(data["topk"])
    _normalize_values(data, Config.model_fields)
    layers = data.get("layers")
    if isinstance(layers, Mapping):
        data["layers"] = {n: dict(ov) if isinstance(ov, Mapping) else ov for n, ov in layers.items()}
        for ov in data["layers"].values():
            if isinstance(ov, dict):
                _normalize_values(ov, HardwareParams.model_fields)
    return data


def load_config(path_or_dict: "str | Path | Mapping[str, Any] | Config | None" = None, *, name: str | None = None) -> Config:
    """Load and validate a config from a TOML/py file path, a dict, or None (all defaults).

    ``name`` labels a dict's origin in error messages. Raises :class:`ConfigError`
    with one line naming the file and key on any problem.
    """
    source = path_or_dict
    if isinstance(source, Config):
        return source
    if source is None:
        data: dict[str, Any] = {}
        name = name or "<defaults>"
    elif isinstance(source, Mapping):
        data = copy.deepcopy(dict(source))
        name = name or "<dict>"
    else:
        path = Path(source)
        name = str(path)
        data = read_config_file(path)
    data = _normalize_keys(data)
    data.pop("source", None)
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc.errors()[0], data, name)) from None
    object.__setattr__(cfg, "source", name)
    return cfg
