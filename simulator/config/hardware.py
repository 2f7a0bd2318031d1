"""Per-layer hardware parameters: :class:`HardwareParams` and the ``[layers.<name>]`` tables.

Sections (``# --- title ---`` comments, the groups of docs/parameters.md):
layer placement, weight mapping, devices, array, ADC / DAC, witin chip
parameters.
"""
from __future__ import annotations

from typing import Any, Literal, Mapping, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from simulator.config.checks import reject_booleans

Range = tuple[float, float]


class HardwareParams(BaseModel):
    """Parameters that may differ per layer (``[layers.<name>]`` overrides them)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_booleans(cls, data):
        """``adc_bits = true`` is not 1: booleans are refused where numbers are expected."""
        if isinstance(data, Mapping):
            reject_booleans(data, cls.model_fields, "")
            layers = data.get("layers")
            if isinstance(layers, Mapping):
                for lname, ov in layers.items():
                    if isinstance(ov, Mapping):
                        reject_booleans(ov, HardwareParams.model_fields, f"layers.{lname}.")
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
