"""Inference configuration: schema, validation and loading.

Parameter names are CrossSim's (manual Table 3.1) so its users can move their
configs over; xbarsim's own additions are marked "xbarsim" below. A config is
a TOML file (or a dict, or a CrossSim-style ``inference_config*.py`` module)
with flat top-level keys and optional per-layer overrides::

    weight_bits = 8
    adc_bits = 8
    [layers.conv2]
    adc_bits = 10

Validation (pydantic) rejects unknown keys with the closest valid name, wrong
types and out-of-range values, and incompatible combinations, each as one
:class:`~simulator.errors.ConfigError` line naming the file and the key.
"""
from __future__ import annotations

import copy
import difflib
import importlib.util
import json
import os
import math
import sys
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator

from simulator.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

Range = tuple[float, float]


class HardwareParams(BaseModel):
    """Parameters that may differ per layer (``[layers.<name>]`` overrides them)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_booleans(cls, data):
        """``adc_bits = true`` is not 1: booleans are refused where numbers are expected."""
        if isinstance(data, Mapping):
            _reject_booleans(data, cls.model_fields, "")
            layers = data.get("layers")
            if isinstance(layers, Mapping):
                for lname, ov in layers.items():
                    if isinstance(ov, Mapping):
                        _reject_booleans(ov, HardwareParams.model_fields, f"layers.{lname}.")
        return data

    # --- layer placement (xbarsim) -------------------------------------------
    analog: bool = Field(True, description="Run this MVM layer on analog arrays (false = exact digital matrix product)")
    # --- weight mapping (manual ch. 6) ---------------------------------------
    weight_bits: int = Field(0, ge=0, le=24, description="Weight resolution (0 = no quantization) [bits]")
    weight_percentile: float = Field(
        100.0, gt=0, le=1000, description="Weight quantization range: the P-th percentile of |w|; above 100 the "
        "range grows beyond max |w| (manual 6.2.1) [percent]")
    weight_quantizer: Literal["uniform", "lloyd"] = Field(
        "uniform", description="xbarsim: weight levels evenly spaced (uniform) or Lloyd-Max optimized (lloyd)")
    weight_levels: Optional[int] = Field(
        None, ge=2, le=65536, description="xbarsim: number of Lloyd-Max weight levels (weight_quantizer = "
        "'lloyd'; None = 2**weight_bits) [levels]")
    lloyd_tol: float = Field(
        1e-6, gt=0, lt=1, description="xbarsim: Lloyd-Max stopping tolerance on the relative change of the "
        "distortion [fraction]")
    lloyd_allow_degenerate: bool = Field(
        False, description="xbarsim: allow a single Lloyd level for a layer of constant weights (else an error)")
    Nslices: int = Field(
        1, ge=1, le=32, description="Weight bit slices: each weight is split over this many arrays (manual 6.6) "
        "[slices]")
    NrowsMax: int = Field(
        0, ge=0, description="Maximum rows per array; larger matrices are partitioned, partial sums added "
        "digitally (manual 8.1; 0 = unlimited) [rows]")
    NcolsMax: int = Field(
        0, ge=0, description="Maximum columns per array (CrossSim 3 cols_max; 0 = unlimited) [columns]")
    grouped_conv: Literal["block_diagonal", "per_group"] = Field(
        "block_diagonal", description="xbarsim: grouped/depthwise convolutions on one block-diagonal array per "
        "layer (zero weights programmed in the off-diagonal cells) or on separate arrays per group (depthwise: per "
        "channel)")
    style: Literal["BALANCED", "OFFSET"] = Field(
        "BALANCED", description="Signed-weight mapping: BALANCED (differential pair G+ - G-) or OFFSET (one "
        "device plus an offset) (manual 6.3)")
    balanced_style: Literal["one_sided", "two_sided", "unified_reference"] = Field(
        "one_sided", description="BALANCED mapping: one_sided (one device of the pair at G_min), two_sided (both "
        "move around the midpoint), unified_reference (G- fixed at G_ref) (manual 6.3.1)")
    G_ref: Optional[float] = Field(
        None, ge=0, lt=1, description="xbarsim: reference conductance of balanced_style = 'unified_reference' "
        "(None = G_min) [normalized conductance, G_max = 1]")
    digital_offset: bool = Field(
        True, description="OFFSET style: subtract the offset digitally (true) or with a unit column on the array "
        "(false) (manual 6.3.2)")
    digital_bias: bool = Field(
        True, description="Add the layer bias digitally (true) or program it as extra array rows (false) (manual 6.5)")
    bias_bits: int = Field(0, ge=0, le=32, description="Resolution of a digital bias (0 = unquantized) [bits]")
    # --- devices (manual ch. 7; per layer, since chips mix array types) --------
    error_model: str = Field(
        "none", description="Programming-error model: none, alpha (Gaussian) or a device name (SONOS, PCM_Joshi, "
        "RRAM_Milo, ...; `xbarsim device list`) (manual 7.2)")
    proportional_error: bool = Field(
        False, description="alpha error model: sigma proportional to the target conductance G (true) or constant "
        "(false)")
    alpha_error: float = Field(
        0.0, ge=0, description="alpha error model: standard deviation of the programming error, as a fraction of "
        "G_max (proportional_error: of the target G); e.g. 0.05 = 5 % (manual 7.2.1) [fraction of G_max or of G]")
    noise_model: str = Field(
        "none", description="Read-noise model: none, alpha (Gaussian, drawn on every read) or a device name "
        "(manual 7.4)")
    proportional_noise: bool = Field(
        False, description="alpha noise model: sigma proportional to the conductance G (true) or constant (false)")
    alpha_noise: float = Field(
        0.0, ge=0, description="alpha noise model: standard deviation of the read noise, as a fraction of G_max "
        "(proportional_noise: of G); drawn anew on every MVM (manual 7.4.1) [fraction of G_max or of G]")
    drift_model: str = Field(
        "none", description="Conductance drift model over time after programming: none or a device name "
        "(PCM_Joshi, SONOS, ...); see t_drift (manual 7.3)")
    device_params: dict[str, Any] = Field(
        default_factory=dict, description="xbarsim: extra coefficients of the device model, by name (units as the"
        " model's docstring gives them, e.g. pcm_Gmax_uS in uS; models: `xbarsim device list`)")
    device_data: Optional[str] = Field(
        None, description="xbarsim: CSV of measured conductances (empirical error and drift model, "
        "devices/empirical.py; path relative to the config file)")
    stuck_off_fraction: float = Field(
        0.0, ge=0, le=1, description="xbarsim: fraction of devices stuck at G_min, drawn per programming [fraction]")
    stuck_on_fraction: float = Field(
        0.0, ge=0, le=1, description="xbarsim: fraction of devices stuck at G_max, drawn per programming [fraction]")
    drift_compensation: Literal["none", "global", "column"] = Field(
        "none", description="xbarsim: rescale outputs by a reference read at each time: none, global (one factor "
        "per layer) or column (one per column)")
    # --- array (manual ch. 8) ------------------------------------------------
    input_bitslicing: bool = Field(
        False, description="Apply inputs one bit (input_slice_size bits) at a time and add the ADC results "
        "digitally (manual 8.2)")
    Rp: float = Field(
        0.0, ge=0, description="Parasitic wire resistance of one segment, normalized to R_min = 1/G_max (manual "
        "8.3; 0 = none) [R_min]")
    Rp_row: Optional[float] = Field(
        None, ge=0, description="Row wire segment resistance (CrossSim 3; None = Rp) [R_min]")
    Rp_col: Optional[float] = Field(
        None, ge=0, description="Column wire segment resistance (CrossSim 3; None = Rp) [R_min]")
    noRowParasitics: bool = Field(
        False, description="Neglect the row wires' resistance (only columns resistive) (manual 8.3)")
    interleaved_posneg: bool = Field(
        False, description="BALANCED: G+ and G- columns interleaved and summed in one column (manual 8.3)")
    Icol_max: float = Field(
        0.0, ge=0, description="Column current limit; currents beyond it clip (manual 8.4; 0 = none) [A]")
    Icell_max: float = Field(
        0.0, ge=0, description="Current of one cell at G_max with the full input voltage, to convert Icol_max "
        "(manual 8.4) [A]")
    subtract_current_in_xbar: bool = Field(
        True, description="BALANCED: subtract the two devices' currents in analog (false: digitize both, subtract"
        " digitally)")
    input_slice_size: int = Field(
        1, ge=1, le=16, description="Input bits applied per step when input_bitslicing (CrossSim 3) [bits]")
    # --- ADC / DAC (manual ch. 9) --------------------------------------------
    adc_bits: int = Field(0, ge=0, le=32, description="ADC resolution (0 = no ADC, outputs exact) (manual 9) [bits]")
    dac_bits: int = Field(
        0, ge=0, le=32, description="DAC (input) resolution (0 = unquantized inputs) (manual 9) [bits]")
    ADC_per_ibit: bool = Field(
        False, description="input_bitslicing: digitize after every input bit (true) or once after analog "
        "accumulation (false) (manual 9.2)")
    adc_range_option: Literal["max", "granular", "calibrated"] = Field(
        "max", description="ADC range: max (worst case the weights allow), granular (ADC step = one conductance-"
        "level step of the weights) or calibrated (from calibration_file / calibration_dir) (manual 9.3)")
    adc_range: Optional[Range] = Field(
        None, description="xbarsim: ADC (min, max) of an unsliced layer (usually per layer) [algorithmic units: "
        "the layer's raw output values]")
    adc_exponents: Optional[list[int]] = Field(
        None, description="xbarsim: per-slice ADC range exponents C_i, limits +-y_max*2**-C_i (manual 9.3.1) "
        "[integer exponents]")
    dac_range: Optional[Range] = Field(
        None, description="xbarsim: input-activation (min, max) mapped onto the DAC's full scale [algorithmic "
        "units: the layer's input values]")
    adc_xbar_range: Optional[list[Range]] = Field(
        None, description="Calibrated ADC (min, max) per weight slice (CrossSim 3 calibrated_range) [array output"
        " units: normalized column current]")
    adc_type: str = Field(
        "generic", description="ADC circuit model (simulator.circuits.converters): generic, ramp, sar, pipeline, "
        "cyclic, ...")
    adc_params: dict[str, Any] = Field(
        default_factory=dict, description="Parameters of the adc_type circuit model, by name (units as the model "
        "documents them)")
    dac_type: str = Field(
        "generic", description="DAC model (simulator.circuits.converters): generic, quantizer, sign_magnitude")
    # --- witin chip parameters (witin_nn names; None = the model's value) -----
    noise_level: Optional[int] = Field(
        None, ge=0, le=9, description="witin: NORMAL read-noise level of the chip, 0 = none .. 9 = strongest "
        "(docs/witin_noise.md; None = the model's value) [level]")
    x_quant_bits: Optional[int] = Field(
        None, ge=8, le=12, description="witin: input resolution (above 8: low 8 bits analog, high bits digital; "
        "None = the model's value) [bits]")
    y_quant_bits: Optional[int] = Field(
        None, ge=8, le=12, description="witin: output resolution (None = the model's value) [bits]")
    weight_quant_bits: Optional[int] = Field(
        None, ge=1, le=8, description="witin: weight resolution (None = the model's value) [bits]")
    scale_x: Optional[float] = Field(
        None, gt=0, description="witin: fixed input scale, integer input codes per unit of float input (None = "
        "the model's value) [codes per unit]")
    scale_y: Optional[float] = Field(
        None, gt=0, description="witin: fixed output scale, integer output codes per unit of float output (None ="
        " the model's value) [codes per unit]")
    scale_weight: Optional[float] = Field(
        None, gt=0, description="witin: fixed weight scale, integer weight codes per unit of float weight (None ="
        " the model's value) [codes per unit]")
    use_auto_scale: Optional[bool] = Field(
        None, description="witin: scales from the recorded io_max (2**(b-1)/2**ceil(log2 io_max)) instead of "
        "scale_x/scale_y/scale_weight")
    bias_row_N: Optional[int] = Field(
        None, ge=1, le=32, description="witin: bias rows of the array; the bias is applied in steps of 128 and "
        "clipped to [-128 N, 127 N] [rows]")
    handle_neg_in: Optional[Literal["FALSE", "PN", "Shift"]] = Field(
        None, description="witin: handling of negative inputs: FALSE (clipped at 0), PN (positive and negative "
        "passes) or Shift (offset by shift_num)")
    shift_num: Optional[float] = Field(
        None, ge=0, description="witin: input shift of handle_neg_in = 'Shift'; the offset is "
        "round(clamp(shift_num*scale_x, 0, 128)) codes [float input units]")
    w_clip: Optional[float] = Field(
        None, gt=0, description="witin: weights clipped to +-w_clip before quantization (None = the model's "
        "value) [float weight units]")
    bias_d: Optional[Union[bool, float, list[float]]] = Field(
        None, description="witin: digital bias part: true/false switches the model's on/off, or values per output"
        " [float output units]")
    noise_mode: Optional[Literal["output", "weight"]] = Field(
        None, description="xbarsim: witin noise as one weight perturbation per call shared by batch and windows "
        "(weight, the default: witin_nn's joint distribution) or drawn per output element (output)")

    @field_validator("adc_range", "dac_range")
    @classmethod
    def _check_range(cls, v):
        if v is not None and not v[0] < v[1]:
            raise ValueError(f"range must satisfy min < max, got ({v[0]}, {v[1]})")
        return v


#: names of the per-layer parameters
LAYER_KEYS = frozenset(HardwareParams.model_fields)


#: A ``[layers.<name>]`` table: any subset of :class:`HardwareParams` (None = inherit).
LayerOverrides = create_model(
    "LayerOverrides",
    __config__=ConfigDict(extra="forbid", allow_inf_nan=False),
    **{
        name: (Optional[f.annotation], Field(None, description=f.description))
        for name, f in HardwareParams.model_fields.items()
    },
)


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


def check_combinations(p: HardwareParams, cfg: "Config", where: str) -> None:
    """Reject incompatible parameter combinations (one line naming both parameters)."""
    if p.adc_range_option == "granular" and p.adc_bits > 0:
        missing = []
        if p.weight_bits == 0:
            missing.append("weight_bits > 0")
        if p.dac_bits == 0:
            missing.append("dac_bits > 0")
        if not p.input_bitslicing:
            missing.append("input_bitslicing = true")
        if not p.ADC_per_ibit:
            missing.append("ADC_per_ibit = true")
        if missing:
            raise ValueError(f"{where}adc_range_option = 'granular' requires {', '.join(missing)} (manual 9.3.3)")
        if p.weight_quantizer == "lloyd":
            raise ValueError(f"{where}adc_range_option = 'granular' needs equally spaced weight levels; "
                             "weight_quantizer = 'lloyd' has none (use 'max' or 'calibrated')")
    if p.input_bitslicing and p.dac_bits == 0:
        raise ValueError(f"{where}input_bitslicing = true requires dac_bits > 0 (the number of input bits)")
    if p.Nslices > 1 and p.weight_bits == 0:
        raise ValueError(f"{where}Nslices = {p.Nslices} requires weight_bits > 0")
    if p.Nslices > 1:
        mag = p.weight_bits - 1 if p.style == "BALANCED" else p.weight_bits
        if p.Nslices > mag:
            raise ValueError(
                f"{where}Nslices = {p.Nslices} is more than the {mag} bits to slice with weight_bits = {p.weight_bits}, style = {p.style}"
            )
        if p.style == "BALANCED" and p.balanced_style == "two_sided":
            raise ValueError(f"{where}Nslices > 1 with style = 'BALANCED' needs balanced_style = 'one_sided' (manual 6.6.1)")
    if p.weight_quantizer == "uniform" and p.weight_levels is not None:
        raise ValueError(f"{where}weight_levels is only used with weight_quantizer = 'lloyd'; use weight_bits for uniform levels")
    if p.balanced_style == "unified_reference" and p.weight_quantizer != "lloyd":
        raise ValueError(f"{where}balanced_style = 'unified_reference' is the non-uniform-level mapping; it needs weight_quantizer = 'lloyd'")
    if p.weight_quantizer == "lloyd":
        if p.weight_levels is None:
            raise ValueError(f"{where}weight_quantizer = 'lloyd' requires weight_levels (an integer >= 2)")
        if p.Nslices > 1:
            raise ValueError(f"{where}weight_quantizer = 'lloyd' cannot be combined with Nslices > 1")
    if p.Rp > 0 and (p.Rp_row is not None or p.Rp_col is not None):
        given = ", ".join(f"{k} = {getattr(p, k)}" for k in ("Rp_row", "Rp_col") if getattr(p, k) is not None)
        raise ValueError(f"{where}Rp = {p.Rp} and {given} both set the wire resistance; give either Rp (rows and columns) "
                         "or Rp_row / Rp_col")
    rp_row, rp_col = wire_resistances(p)
    if p.noRowParasitics and p.Rp_row is not None and p.Rp_row > 0:
        raise ValueError(f"{where}Rp_row = {p.Rp_row} has no effect with noRowParasitics = true (gate_input: the rows carry "
                         "no current); set Rp_row = 0 or noRowParasitics = false")
    if max(rp_row, rp_col) > 0:
        from simulator.circuits.parasitics import check_topology

        try:
            check_topology(max(rp_row, rp_col), p.noRowParasitics, p.style, p.interleaved_posneg, p.input_bitslicing)
        except ConfigError as exc:
            raise ValueError(f"{where}{exc}") from None
    if where == "" and isinstance(cfg, Config):  # converter models that no layer would use
        def any_layer(key):
            return getattr(p, key) > 0 or any((getattr(o, key) or 0) > 0 for o in cfg.layers.values())

        if (p.adc_type != "generic" or p.adc_params) and not any_layer("adc_bits"):
            what = f"adc_type = {p.adc_type!r}" if p.adc_type != "generic" else "adc_params"
            raise ValueError(f"{what} has no effect: no layer has an ADC (adc_bits = 0)")
        if p.dac_type != "generic" and not any_layer("dac_bits"):
            raise ValueError(f"dac_type = {p.dac_type!r} has no effect: no layer has a DAC (dac_bits = 0)")
    if p.dac_type != "generic" and p.input_bitslicing:
        raise ValueError(f"{where}dac_type = {p.dac_type!r} has no effect with input_bitslicing = true (the inputs are "
                         "integer codes applied bit by bit); remove dac_type")
    if p.Icol_max > 0 and not p.Icell_max > 0:
        raise ValueError(f"{where}Icol_max = {p.Icol_max} needs Icell_max > 0 (the current of one cell at Gmax, A) to limit column currents")
    check_array_options(p, where)
    if p.stuck_off_fraction + p.stuck_on_fraction > 1:
        raise ValueError(f"{where}stuck_off_fraction + stuck_on_fraction = "
                         f"{p.stuck_off_fraction + p.stuck_on_fraction:g}: a device is stuck at most one way (sum <= 1)")
    if p.device_data and p.error_model not in ("none", "empirical"):
        raise ValueError(f"{where}device_data sets the programming error (the 'empirical' model); "
                         f"error_model = {p.error_model!r} cannot be used with it (set error_model = 'none')")
    if p.adc_exponents is not None and len(p.adc_exponents) != p.Nslices:
        raise ValueError(f"{where}adc_exponents has {len(p.adc_exponents)} entries, expected Nslices = {p.Nslices}")
    if p.adc_range_option != "calibrated":
        for key in ("adc_range", "adc_exponents"):
            if getattr(p, key) is not None:
                raise ValueError(f"{where}{key} is only used with adc_range_option = 'calibrated' "
                                 f"(it is {p.adc_range_option!r}): set adc_range_option = 'calibrated' or drop {key}")
    if p.G_ref is not None and p.balanced_style != "unified_reference":
        raise ValueError(f"{where}G_ref is the reference conductance of balanced_style = 'unified_reference' "
                         f"(it is {p.balanced_style!r}): set balanced_style = 'unified_reference' or drop G_ref")


def wire_resistances(p: HardwareParams) -> tuple[float, float]:
    """(row, column) wire segment resistance normalized to Rmin: Rp_row / Rp_col, each defaulting to Rp."""
    return (p.Rp if p.Rp_row is None else p.Rp_row), (p.Rp if p.Rp_col is None else p.Rp_col)


def check_array_options(p: HardwareParams, where: str) -> None:
    """CrossSim 3 array options: column split, input slices, separate subtraction, converter models."""
    if p.input_slice_size > 1:
        if not p.input_bitslicing:
            raise ValueError(f"{where}input_slice_size = {p.input_slice_size} requires input_bitslicing = true")
        if p.noRowParasitics:
            raise ValueError(f"{where}input_slice_size = {p.input_slice_size} needs driven rows; noRowParasitics = true "
                             "(gate_input: inputs switch the select transistors) takes one input bit at a time")
        if p.adc_range_option == "granular" and p.adc_bits > 0:
            raise ValueError(f"{where}adc_range_option = 'granular' sets the ADC step for 1-bit inputs (manual 9.3.3); "
                             f"input_slice_size = {p.input_slice_size} needs 'max' or 'calibrated'")
    if not p.subtract_current_in_xbar:
        if p.style != "BALANCED":
            raise ValueError(f"{where}subtract_current_in_xbar = false needs style = 'BALANCED' (two devices per weight)")
        if p.interleaved_posneg:
            raise ValueError(f"{where}subtract_current_in_xbar = false contradicts interleaved_posneg = true (the "
                             "interleaved devices share one column, so their currents subtract in the array)")
    if p.adc_xbar_range is not None and p.adc_range_option != "calibrated":
        raise ValueError(f"{where}adc_xbar_range is only used with adc_range_option = 'calibrated'")
    from simulator.circuits.converters import check_converter_options

    try:
        check_converter_options(p.adc_type, p.adc_params, p.dac_type)
    except ConfigError as exc:
        raise ValueError(f"{where}{exc}") from None


# ---------------------------------------------------------------------- loading
def _numeric_annotation(ann) -> bool:
    """True for int/float fields (also inside Optional/Union/list/tuple) that do not also take booleans."""
    import typing

    leaves: set = set()

    def walk(a):
        args = typing.get_args(a)
        if args:
            for x in args:
                walk(x)
        else:
            leaves.add(a)

    walk(ann)
    return bool(leaves & {int, float}) and bool not in leaves


def _reject_booleans(data: Mapping[str, Any], fields, where: str) -> None:
    for key, value in data.items():
        f = fields.get(key)
        if f is None or not _numeric_annotation(f.annotation):
            continue
        items = value if isinstance(value, (list, tuple)) else [value]
        if any(isinstance(v, bool) for v in items):
            raise ValueError(f"{where}{key} = {value!r}: expected a number, not a boolean")


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


#: config keys holding file or folder paths: relative ones are relative to the config file's folder
PATH_KEYS = ("dataset_path", "calibration_file", "calibration_dir", "dac_limits_file", "device_path", "device_data")
_MODEL_SUFFIXES = (".h5", ".hdf5", ".keras", ".onnx", ".pt", ".pt2", ".pth")


def resolve_paths(data: dict[str, Any], config_path: Path) -> dict[str, Any]:
    """Make the relative paths of a config file's :data:`PATH_KEYS` (and a file-like ``model_name``)
    relative to the folder of ``config_path`` (a config means the same wherever it is run from)."""
    if not isinstance(data, dict):
        return data
    base = Path(os.path.abspath(config_path)).parent
    for key in PATH_KEYS + ("model_name",):
        value = data.get(key)
        if not isinstance(value, str) or not value:
            continue
        if key == "model_name" and not ("/" in value or "\\" in value or value.lower().endswith(_MODEL_SUFFIXES)):
            continue  # a bundled model's name, not a path
        p = Path(value).expanduser()
        if not p.is_absolute():
            data[key] = str(base / p)
    return data


def read_config_file(path: Path) -> dict[str, Any]:
    """Raw dict from a ``.toml`` or CrossSim-style ``.py`` config file."""
    if not path.exists():
        raise ConfigError(f"config file {str(path)!r} not found")
    if path.suffix == ".toml":
        try:
            with open(path, "rb") as f:
                return resolve_paths(tomllib.load(f), path)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML ({exc})") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not a TOML text file (byte {exc.start} is not UTF-8)") from None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if path.suffix == ".py":
        data = _read_python_config(path)
        from simulator.io import crosssim_config

        if crosssim_config.is_crosssim3_flat(data):
            return resolve_paths(crosssim_config.from_flat(data, str(path)), path)
        return resolve_paths(data, path)
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: invalid JSON ({exc})") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not a JSON text file (byte {exc.start} is not UTF-8)") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: a JSON config must be an object of parameters, got a {type(data).__name__}")
        from simulator.io import crosssim_config

        if crosssim_config.is_crosssim_json(data):
            return resolve_paths(crosssim_config.from_json(data, str(path)), path)
        return resolve_paths(data, path)
    raise ConfigError(f"{path}: config files must end in .toml, .py or .json")


#: CrossSim inference_config.py names that xbarsim reads differently or not at all
_CROSSSIM_IGNORED = {"gpu_num", "show_model_summary"}


def _read_python_config(path: Path) -> dict[str, Any]:
    """Read the upper-level assignments of a CrossSim ``inference_config*.py`` module."""
    spec = importlib.util.spec_from_file_location(f"_xbarsim_cfg_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise ConfigError(f"{path}: the Python config failed to run ({exc.__class__.__name__}: {exc})") from None
    data = {}
    for key, value in vars(module).items():
        if key.startswith("_") or callable(value) or type(value).__name__ == "module":
            continue
        if key in ("adc_bits_vec", "dac_bits_vec"):
            raise ConfigError(f"{path}: {key} is not supported; use [layers.<name>] adc_bits / dac_bits overrides")
        if isinstance(value, tuple):
            value = list(value)
        data[key] = value
    return data


def apply_overrides(data: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Set ``"key"`` or ``"layers.NAME.key"`` entries of a raw config dict in place."""
    for key, value in overrides.items():
        parts = key.split(".")
        if parts[0] == "layers":  # the layer name may hold dots (torch qualified names): the key is the last part
            if len(parts) < 3 or not all(parts[1:]):
                raise ConfigError(f"override {key!r}: per-layer keys are written layers.<layer name>.<key>")
            data.setdefault("layers", {}).setdefault(".".join(parts[1:-1]), {})[parts[-1]] = value
        elif len(parts) == 1:
            data[key] = value
        else:
            raise ConfigError(f"override {key!r}: expected a parameter name or layers.<layer>.<key>")
    return data


def parse_value(text: str) -> Any:
    """Parse a command-line value: TOML syntax (numbers, booleans, strings, lists) or a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        low = text.strip().lower()
        if low in ("true", "false"):
            return low == "true"
        if low in ("none", "null"):
            return None
        return text


def dict_to_toml(d: Mapping[str, Any]) -> str:
    """Minimal TOML writer for config dicts (scalars, lists, one level of tables)."""

    def fmt(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(fmt(x) for x in v) + "]"
        raise TypeError(type(v))

    lines, tables = [], []
    for k, v in d.items():
        if v is None:
            continue
        if isinstance(v, Mapping):
            tables.append((k, v))
        else:
            lines.append(f"{k} = {fmt(v)}")
    for k, v in tables:
        scalars = {a: b for a, b in v.items() if not isinstance(b, Mapping) and b is not None}
        subs = {a: b for a, b in v.items() if isinstance(b, Mapping)}
        if scalars or not subs:
            lines.append(f"\n[{k}]")
            lines += [f"{a} = {fmt(b)}" for a, b in scalars.items()]
        for a, b in subs.items():
            lines.append(f"\n[{k}.{a}]")
            lines += [f"{c} = {fmt(e)}" for c, e in b.items() if e is not None]
    return "\n".join(lines) + "\n"
