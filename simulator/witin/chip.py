"""Exact chip semantics of one witin CIM layer (WTM2101 class).

:class:`WitinChipLayer` reproduces what witin_nn computes in eval mode for
WitinLinear / WitinConv2d / WitinConvTranspose2d (bit for bit at
``noise_level = 0``, the same output-noise statistics at ``noise_level > 0``)
and a GRU cell built from two such products. The integer pipeline is::

    NPU_x  = quantize_input(x)                      uint xb (PN: sign-magnitude)
    low, high = split_input(NPU_x)                  low 8 bits analog, rest digital
    analog  = low  (*) NPU_w + 128 * bias_steps + noise
    digital = high (*) NPU_w + 128 * bias_d_steps
    NPU_y  = clip(clip(round(analog/(sx*sw)*sy)) + round(digital/round(g)))
    y      = NPU_y / scale_y

where ``(*)`` is the layer's product (matrix product, convolution or
transposed convolution). All integer math runs in float64 (exact); the
divisions by the scales run in float32 in witin_nn's order
(``quant.quantize_output``, ``quant.combine_outputs``).

Layer-type rules measured on witin_nn 0.1.3 (``quant.INPUT_MODES``, :data:`ONE_PASS`):

* WitinLinear: the pipeline above for FALSE / PN / Shift (PN as one signed
  product, i.e. with ``-NPU_w`` unclipped for the negative inputs).
* WitinConv2d: with FALSE the input is *signed* (scale ``2**(xb-1)/...``,
  clip ``[-2**(xb-1), 2**(xb-1)-1]``); conv products are computed in one pass
  (no analog/digital input split, bias_d unused, the Shift compensation
  folded into the bias before its single rounding); PN results are clipped to
  int8 whatever y_quant_bits is. Padding is applied to the float input before
  quantization (so with Shift a padded pixel reads the shift offset). The
  Shift offset is ``round(clamp(shift_num*scale_x, 0, 128))`` for every
  x_quant_bits (WitinLinear: up to ``2**xb``).
* WitinConvTranspose2d: unsigned input like Linear, one pass; Shift does not
  exist for it in witin_nn.
* PN convolutions: two passes, positive inputs with NPU_w plus the bias rows,
  negative magnitudes with the separately quantized ``clip(round(-w*sw))``
  (``-2**(wb-1)`` where NPU_w = ``2**(wb-1)-1``); each pass is divided by
  ``sx*sw`` in float32 and the two quotients are summed before ``* sy``.

With these rules the comparison script finds no differing element (noise
level 0, 900 random cases for each of several seeds). Bit exactness needs
accumulators below 2**24: witin_nn sums in float32 in its BLAS / oneDNN
order, which rounds larger sums in an order this simulator cannot reproduce.

The GRU cell (witin_nn 0.1.3 ships none) is modelled as two Linear-type
products ``W_ih x + b_ih`` and ``W_hh h + b_hh`` with their own scales
(``attrs["witin"]["ih"]`` / ``["hh"]``), followed by exact digital gates in
torch.nn.GRUCell order (r, z, n).

The witin parameters of a layer live in ``layer.attrs["witin"]`` (see
:data:`WITIN_KEYS` and ``simulator/io/witin_params.py``); a user's config
may override each of them (``None`` keeps the model's value).

``hardware = VPU`` convolutions run the digital pipeline of
:mod:`simulator.witin.vpu`; ``noise_model`` SIMPLE and MBS draw their noise
in :mod:`simulator.witin.noise`.

Noise (NORMAL model, ``docs/witin_noise.md``): every analog cell holding
NPU_w reads with Gaussian error of std ``k*|NPU_w| + b`` (``k = 0.015605*L``,
``b = 0.3145*L`` for noise level L), the bias rows likewise. By default the
error has witin_nn's joint distribution (``noise_mode = "weight"``, the
default): one perturbed weight array (and bias-row draw) per forward call,
shared by the whole batch and all sliding windows of a convolution; PN
layers perturb their two weight copies independently, as witin_nn does.
``noise_mode = "output"`` draws the same per-element marginal at the output,
independently for every output element (variance ``sum x_low**2 * std**2``,
one extra product): each output has the same std, but errors of different
outputs are uncorrelated, so they partly cancel in later sums (whole-network
noise is then smaller than witin_nn's; see docs/witin_noise.md).
"""
from __future__ import annotations

from typing import Any

from simulator import ops
from simulator.backend import RandomStreams
from simulator.errors import ModelError
from simulator.witin import quant
from simulator.witin.noise import ArrayNoise
from simulator.witin.vpu import VPUProduct

#: Keys of ``layer.attrs["witin"]`` (and of the user's overrides).
WITIN_KEYS = (
    "noise_level",
    "x_quant_bits",
    "y_quant_bits",
    "weight_quant_bits",
    "scale_x",
    "scale_y",
    "scale_weight",
    "use_auto_scale",
    "bias_row_N",
    "handle_neg_in",
    "shift_num",
    "w_clip",
    "bias_d",
)

#: Defaults of witin_nn's WitinLayerConfig.
DEFAULTS: dict[str, Any] = {
    "noise_level": 0,
    "x_quant_bits": 8,
    "y_quant_bits": 8,
    "weight_quant_bits": 8,
    "scale_x": 1.0,
    "scale_y": 1.0,
    "scale_weight": 1.0,
    "use_auto_scale": True,
    "bias_row_N": 8,
    "handle_neg_in": "FALSE",
    "shift_num": 1.0,
    "w_clip": None,
    "bias_d": 0.0,
    "noise_mode": "weight",
}

_NEG_ALIASES = {1: "FALSE", 2: "PN", 3: "Shift", "false": "FALSE", "pn": "PN", "shift": "Shift", "none": "FALSE"}


def normalize_handle_neg_in(value: Any) -> str:
    """'FALSE' / 'PN' / 'Shift' from a string, an enum member or witin's integer code."""
    if value is None or value is False:
        return "FALSE"
    if hasattr(value, "name") and not isinstance(value, str):  # HandleNegInType member
        value = value.name
    if isinstance(value, str):
        text = value.split(".")[-1]
        if text in quant.HANDLE_NEG_IN:
            return text
        if text.lower() in _NEG_ALIASES:
            return _NEG_ALIASES[text.lower()]
    elif isinstance(value, int) and value in _NEG_ALIASES:
        return _NEG_ALIASES[value]
    raise ModelError(f"witin handle_neg_in must be one of FALSE, PN, Shift, got {value!r}")


def _get(params: Any, key: str):
    if params is None:
        return None
    if isinstance(params, dict):
        return params.get(key)
    return getattr(params, key, None)


class _Spec:
    """Resolved witin parameters of one product (model values, user overrides, defaults)."""

    def __init__(self, where: str, model: dict, params: Any, layer_type: str):
        self.where = where
        v: dict[str, Any] = {}
        for key in WITIN_KEYS + ("noise_mode",):
            user = _get(params, key)
            if key == "bias_d" and isinstance(user, bool):
                # a boolean override switches the model's bias_d on (True) or off (False)
                user = None if user else 0.0
            v[key] = user if user is not None else model.get(key, DEFAULTS[key])
        self.noise_level = int(v["noise_level"] or 0)
        self.xb = int(v["x_quant_bits"])
        self.yb = int(v["y_quant_bits"])
        self.wb = int(v["weight_quant_bits"])
        self.bias_row_N = int(v["bias_row_N"])
        self.handle_neg_in = normalize_handle_neg_in(v["handle_neg_in"])
        self.shift_num = float(v["shift_num"])
        self.w_clip = None if v["w_clip"] in (None, 0) else float(v["w_clip"])
        self.bias_d = v["bias_d"]
        self.noise_mode = v["noise_mode"]
        # fields of witin_nn's layer_config that only the model sets (snapshot taken when the layer was built)
        self.use_quantization = model.get("use_quantization", True) not in (False, 0, "False")
        self.model_to_linear = bool(model.get("to_linear", False))
        self.hardware = str(model.get("hardware") or "ARRAY").split(".")[-1]
        # hardware = VPU: convolutions run on the digital vector unit (simulator/witin/vpu.py), to_linear or not
        self.vpu = self.hardware == "VPU" and layer_type in ("Conv2D", "Conv2DTranspose") and self.use_quantization
        self.to_linear = self.model_to_linear and layer_type == "Conv2D" and not self.vpu
        self.output_fp_clip = model.get("output_fp_clip")
        self.g_algo = float(1 if model.get("G_algo") is None else model["G_algo"])  # witin's default 1
        self.noise_model = str(model.get("noise_model") or "NORMAL").split(".")[-1]
        self._check(layer_type)
        # WitinConv2d with to_linear unfolds its input and runs the WitinLinear pipeline on the patches
        self.input_mode = quant.INPUT_MODES[("Dense" if self.to_linear else layer_type, self.handle_neg_in)]
        if self.vpu:  # signed inputs, whatever handle_neg_in says
            self.input_mode = "signed"
        if not self.use_quantization:
            return
        if bool(v["use_auto_scale"]):
            try:
                self.scale_x = quant.input_scale(self._io(model, "io_max_x"), self.xb, self.handle_neg_in, self.input_mode)
                self.scale_weight = quant.weight_scale(self._io(model, "io_max_weight"), self.wb)
                self.scale_y = quant.output_scale(self._io(model, "io_max_y"), self.yb)
            except ModelError as exc:
                raise ModelError(f"{where}: {exc}") from None
            # a user may still pin individual scales
            for key in ("scale_x", "scale_weight", "scale_y"):
                user = _get(params, key)
                if user is not None and _get(params, "use_auto_scale") is False:
                    setattr(self, key, float(user))
        else:
            self.scale_x = float(v["scale_x"])
            self.scale_weight = float(v["scale_weight"])
            self.scale_y = float(v["scale_y"])
        for key in ("scale_x", "scale_weight", "scale_y"):
            if not getattr(self, key) > 0:
                raise ModelError(f"{where}: witin {key} must be > 0, got {getattr(self, key)!r}")
        self.g = quant.g_value(self.scale_x, self.scale_weight, self.scale_y)
        self.shift = (
            quant.shift_offset(self.shift_num, self.scale_x, self.xb,
                               quant.CONV_SHIFT_LIMIT if layer_type == "Conv2D" and not self.to_linear else None)
            if self.handle_neg_in == "Shift" else 0.0
        )

    def _io(self, model: dict, key: str) -> float:
        if key not in model or model[key] is None:
            raise ModelError(f"{self.where}: use_auto_scale needs witin {key!r} (the layer's autoscale io_max)")
        return float(model[key])

    def _check(self, layer_type: str) -> None:
        w = self.where
        if not 8 <= self.xb <= 12:
            raise ModelError(f"{w}: witin x_quant_bits must be 8..12, got {self.xb}")
        if not 8 <= self.yb <= 12:
            raise ModelError(f"{w}: witin y_quant_bits must be 8..12, got {self.yb}")
        if not 1 <= self.wb <= 8:
            raise ModelError(f"{w}: witin weight_quant_bits must be 1..8, got {self.wb}")
        if self.bias_row_N < 1:
            raise ModelError(f"{w}: witin bias_row_N must be >= 1, got {self.bias_row_N}")
        if not 0 <= self.noise_level <= 9:
            raise ModelError(f"{w}: witin noise_level must be 0..9, got {self.noise_level}")
        if self.shift_num < 0:
            raise ModelError(f"{w}: witin shift_num must be >= 0, got {self.shift_num}")
        if self.noise_mode not in ("output", "weight"):
            raise ModelError(f"{w}: witin noise_mode must be 'output' or 'weight', got {self.noise_mode!r}")
        if self.handle_neg_in == "Shift" and layer_type == "Conv2DTranspose":
            raise ModelError(f"{w}: witin handle_neg_in = Shift is not available for ConvTranspose2d (use PN)")
        if self.hardware not in ("ARRAY", "VPU"):
            raise ModelError(f"{w}: witin hardware must be ARRAY or VPU, got {self.hardware!r}")
        if self.noise_level > 0 and self.use_quantization and not self.vpu:  # the VPU draws no noise
            self._check_noise_model(layer_type)
        if layer_type == "Conv2DTranspose" and bool(self.model_to_linear) and not self.vpu:
            raise ModelError(f"{w}: witin to_linear = True is not simulated for ConvTranspose2d (witin_nn 0.1.3's "
                             "unfolded transposed convolution fails on most shapes)")
        if self.output_fp_clip is not None and not float(self.output_fp_clip) > 0:
            raise ModelError(f"{w}: witin output_fp_clip must be > 0 or None, got {self.output_fp_clip!r}")
        self._check_g_algo(layer_type)

    def _check_g_algo(self, layer_type: str) -> None:
        """G_algo divides the outputs (quant.output_divisor; float mode ``(x W + b) / G``; noise: noise.py)."""
        w, g = self.where, self.g_algo
        if not g > 0:
            raise ModelError(f"{w}: witin G_algo = {g:g} is not simulated: witin_nn divides the layer's outputs by "
                             "G_algo (0 gives inf / NaN outputs); give G_algo > 0")
        if g != 1 and layer_type == "GRUCell":  # also refused at import (witin_params.UNSIMULATED_FIELDS)
            raise ModelError(f"{w}: witin G_algo = {g:g} is not simulated for GRU cells (traced on Linear / Conv2d / "
                             "ConvTranspose2d only; G_algo = 1 is simulated everywhere)")

    def _check_noise_model(self, layer_type: str) -> None:
        w = self.where
        if self.noise_model not in ("NORMAL", "SIMPLE", "MBS"):
            raise ModelError(f"{w}: witin noise_model = {self.noise_model} is not simulated (witin_nn 0.1.3's "
                             "ARRMDL layers raise AttributeError at noise_level > 0); use level 0 or NORMAL/SIMPLE/MBS")
        if self.noise_model == "MBS" and layer_type != "Dense" and not self.to_linear:
            raise ModelError(f"{w}: witin noise_model = MBS exists for WitinLinear and to_linear = True convolutions "
                             "only (witin_nn 0.1.3 raises an AssertionError for this layer)")
        if self.noise_model != "NORMAL" and self.noise_mode == "output":
            raise ModelError(f"{w}: noise_mode = 'output' is defined for noise_model NORMAL only; "
                             f"{self.noise_model} is simulated with witin_nn's own draws (use noise_mode = 'weight')")


# ---------------------------------------------------------------- products
def _pair(value, default) -> tuple[int, int]:
    if value is None:
        return default
    if isinstance(value, int):
        return value, value
    return int(value[0]), int(value[1])


class _Dense:
    def __init__(self, kernel, xp):
        self.xp = xp
        self.kernel = kernel  # (in, out)

    def fan_sum(self, nw):
        return nw.sum(axis=0)

    def __call__(self, x, w):
        return x @ w


class _Conv2D:
    """Cross-correlation of NHWC input with a (kh, kw, cin/groups, cout) kernel."""

    def __init__(self, config: dict, xp):
        self.xp = xp
        self.k = _pair(config.get("kernel_size"), None)
        self.s = _pair(config.get("strides"), (1, 1))
        self.d = _pair(config.get("dilation_rate"), (1, 1))
        self.padding = config.get("padding", "valid")
        self.groups = int(config.get("groups", 1) or 1)
        self.padding_mode = "zeros"  # set from attrs["witin"]["padding_mode"] by WitinChipLayer

    def fan_sum(self, nw):
        return nw.sum(axis=(0, 1, 2))

    def pad_input(self, x):
        """Pad the float input (before quantization, as witin_nn does): zeros, or reflected for padding_mode reflect."""
        (kh, kw), (sh, sw), (dh, dw) = self.k, self.s, self.d
        pads = ops.resolve_padding(self.padding, x.shape[1], x.shape[2], kh, kw, sh, sw, dh, dw)
        if self.padding_mode == "reflect":
            (t, b), (l, r) = pads
            return self.xp.pad(x, ((0, 0), (t, b), (l, r), (0, 0)), mode="reflect")
        return ops.pad_nhwc(x, pads, self.xp)

    def __call__(self, x, w):
        """The product of an already padded input (see :meth:`pad_input`): im2col windows times the kernel matrix
        (block-diagonal for groups), exact for the integer-valued float64 operands of the pipeline."""
        xp = self.xp
        (kh, kw), (sh, sw), (dh, dw) = self.k, self.s, self.d
        try:
            cols, (Ho, Wo) = ops.im2col(xp.ascontiguousarray(x), kh, kw, sh, sw, dh, dw, xp)
        except ValueError as exc:
            raise ModelError(str(exc)) from None
        y = cols @ ops.conv_matrix(w, self.groups, xp)
        return y.reshape(x.shape[0], Ho, Wo, w.shape[-1])


class _Conv2DTranspose:
    """Transposed convolution of NHWC input with a Keras (kh, kw, cout, cin) kernel.

    ``padding`` is 'valid', 'same' or explicit ``[[t, b], [l, r]]`` crops (torch's
    ``padding``); ``output_padding`` extends the bottom/right edge.
    """

    def __init__(self, config: dict, xp):
        self.xp = xp
        self.k = _pair(config.get("kernel_size"), None)
        self.s = _pair(config.get("strides"), (1, 1))
        self.d = _pair(config.get("dilation_rate"), (1, 1))
        self.padding = config.get("padding", "valid")
        self.op = _pair(config.get("output_padding"), (0, 0))

    def fan_sum(self, nw):  # not used: Shift is unavailable for transposed convolutions
        return nw.sum(axis=(0, 1, 3))

    def __call__(self, x, w):
        """Stride-1 convolution of the zero-upsampled, padded input with the flipped kernel (shared ops)."""
        xp = self.xp
        (kh, kw), (dh, dw) = self.k, self.d
        up = ops.conv_transpose_input(x, self.k, self.s, self.d, self.padding, self.op, xp)
        cols, (Ho, Wo) = ops.im2col(xp.ascontiguousarray(up), kh, kw, 1, 1, dh, dw, xp)
        k = ops.transpose_kernel_as_conv(w)
        y = cols @ k.reshape(-1, k.shape[-1])
        return y.reshape(x.shape[0], Ho, Wo, k.shape[-1])


#: (product, input mode) -> output bits of a product computed in one pass without the analog/digital input
#: split; "yb" = y_quant_bits. Products not listed split inputs wider than 8 bits (guide 2.5).
ONE_PASS = {
    ("_Conv2D", "signed"): "yb",
    ("_Conv2D", "pn"): 8,
    ("_Conv2D", "shift"): "yb",
    ("_Conv2DTranspose", "unsigned"): "yb",
    ("_Conv2DTranspose", "pn"): "yb",
}


class _Product:
    """One witin CIM product: quantized weights, bias steps, scales and the integer pipeline."""

    def __init__(self, where, spec: _Spec, op, kernel, bias, xp, rng):
        self.where, self.spec, self.op, self.xp, self.rng = where, spec, op, xp, rng
        s = spec
        self.vpu = None
        if not s.use_quantization:
            # witin_nn's float mode: the plain float product with the weights clipped to +-w_clip, no noise
            w = xp.asarray(kernel, dtype=xp.float32)
            self.float_w = w if s.w_clip is None else xp.clip(w, -xp.float32(s.w_clip), xp.float32(s.w_clip))
            self.float_b = None if bias is None else xp.asarray(bias, dtype=xp.float32).reshape(-1)
            return
        n_out = kernel.shape[2] if isinstance(op, _Conv2DTranspose) else kernel.shape[-1]
        self.vpu = VPUProduct(s, op, kernel, bias, n_out, xp) if s.vpu else None
        if self.vpu is not None:
            return
        self.nw = quant.quantize_weight(xp.asarray(kernel), s.scale_weight, s.wb, xp, s.w_clip)
        b = xp.zeros(n_out, dtype=xp.float32) if bias is None else xp.asarray(bias, dtype=xp.float32).reshape(-1)
        comp = None
        if s.handle_neg_in == "Shift":
            comp = s.shift * op.fan_sum(self.nw)
        bias_d = None
        one_pass = (type(op).__name__, s.input_mode) in ONE_PASS and not s.to_linear
        if s.xb > quant.ANALOG_INPUT_BITS and not one_pass and s.bias_d is not None:
            bd = xp.asarray(s.bias_d, dtype=xp.float32).reshape(-1)
            bias_d = bd if bd.size == n_out else xp.broadcast_to(bd, (n_out,))
        self.analog_steps, self.digital_steps = quant.analog_bias_units(
            b, s.scale_x, s.scale_weight, s.bias_row_N, 8 if one_pass else s.xb, xp,
            shift_comp=comp, bias_d=bias_d,
        )
        one_pass = None if s.to_linear else ONE_PASS.get((type(op).__name__, s.input_mode))
        self.out_bits = None if one_pass is None else (s.yb if one_pass == "yb" else int(one_pass))
        self.has_digital = s.xb > quant.ANALOG_INPUT_BITS and one_pass is None
        self.pn_negated = None
        if s.input_mode == "pn" and one_pass is not None:
            # -W is quantized on its own: clip(round(-w * scale_weight)) reaches -2**(wb-1) where W saturated at
            # 2**(wb-1)-1 (it is not clip(-NPU_w))
            self.pn_negated = quant.quantize_weight(-xp.asarray(kernel, dtype=xp.float32), s.scale_weight, s.wb, xp, s.w_clip)
        self.array_noise = ArrayNoise(self) if s.noise_level > 0 and s.noise_model != "NORMAL" else None
        if s.noise_level > 0:
            self.w_std = quant.weight_noise_std(self.nw, s.noise_level, xp)
            self.bias_var = quant.bias_noise_var(self.analog_steps, s.bias_row_N, s.noise_level, xp)

    def npu(self, x):
        """NPU_y (integer valued) for input ``x`` in the layer's float units."""
        xp, s = self.xp, self.spec
        if self.vpu is not None:
            return self.vpu.npu(x)
        if hasattr(self.op, "pad_input"):
            x = self.op.pad_input(xp.asarray(x))  # witin_nn pads the float input, before quantization
        nx = quant.quantize_input(x, s.scale_x, s.xb, s.handle_neg_in, xp, s.shift, s.input_mode)
        if not self.has_digital:
            bits = s.yb if self.out_bits is None else self.out_bits
            # output_fp_clip: WitinConv2d / WitinConvTranspose2d clip acc/(sx*sw) (float units) before the output
            # quantization (WitinLinear and to_linear convolutions ignore it)
            fp_clip = (s.output_fp_clip if isinstance(self.op, (_Conv2D, _Conv2DTranspose)) and not s.to_linear
                       else None)
            return quant.quantize_output(self._analog(nx), s.scale_x, s.scale_weight, s.scale_y, bits, xp,
                                         fp_clip=fp_clip, g_algo=s.g_algo)
        low, high = quant.split_input(nx, xp)
        digital = self.op(high, self.nw) + self.digital_steps * quant.BIAS_ROW_INPUT
        return quant.combine_outputs(self._analog(low), digital, s.scale_x, s.scale_weight, s.scale_y, s.yb, xp,
                                     g_algo=s.g_algo)

    def _analog(self, nx):
        """Accumulator of the analog array: product, bias rows and (noise_level > 0) read noise."""
        xp, s = self.xp, self.spec
        if self.array_noise is not None:  # SIMPLE / MBS (simulator/witin/noise.py)
            return self.array_noise(nx)
        bias = self.analog_steps * quant.BIAS_ROW_INPUT
        if self.pn_negated is not None:
            # two passes: positive inputs with W (and the bias rows), magnitudes of negative inputs with the
            # separately quantized -W (clip(round(-w*sw)): -2**(wb-1) where W saturated at 2**(wb-1)-1 and
            # 2**(wb-1)-1 where W = -2**(wb-1)); witin_nn divides each pass by sx*sw before summing (float32),
            # so the accumulators are returned as a pair (see quant.output_units)
            pos, neg = xp.maximum(nx, 0.0), xp.maximum(-nx, 0.0)
            if s.noise_level > 0 and s.noise_mode == "weight":
                # witin_nn: independent perturbations of the two weight copies, drawn once per call
                return (self.op(pos, self._perturbed(self.nw)) + bias + self._bias_noise(),
                        self.op(neg, self._perturbed(self.pn_negated)))
            acc_pos = self.op(pos, self.nw) + bias
            acc_neg = self.op(neg, self.pn_negated)
            if s.noise_level == 0:
                return acc_pos, acc_neg
            var = self.op(nx * nx, self.w_std * self.w_std) + self.bias_var
            return acc_pos + xp.sqrt(var) * xp.asarray(self.rng.standard_normal(acc_pos.shape)), acc_neg
        if s.noise_level == 0:
            return self.op(nx, self.nw) + bias
        if s.noise_mode == "weight":
            # one perturbed array per call, shared by the batch and all windows (witin_nn's noise)
            if s.input_mode == "pn":
                # WitinLinear PN: the array holds [NPU_w; -NPU_w], each copy perturbed on its own
                pos, neg = xp.maximum(nx, 0.0), xp.maximum(-nx, 0.0)
                return (self.op(pos, self._perturbed(self.nw)) + self.op(neg, self._perturbed(-self.nw))
                        + bias + self._bias_noise())
            return self.op(nx, self._perturbed(self.nw)) + bias + self._bias_noise()
        acc = self.op(nx, self.nw) + bias
        var = self.op(nx * nx, self.w_std * self.w_std) + self.bias_var
        return acc + xp.sqrt(var) * xp.asarray(self.rng.standard_normal(acc.shape))

    def _perturbed(self, nw):
        """``nw`` plus one draw of the NORMAL read noise (std ``k*|w| + b``, the same for ``-w``)."""
        return nw + self.xp.asarray(self.rng.standard_normal(nw.shape)) * self.w_std

    def _bias_noise(self):
        """One draw of the bias rows' noise per output (variance :func:`quant.bias_noise_var`)."""
        xp = self.xp
        return xp.asarray(self.rng.standard_normal(self.analog_steps.shape)) * xp.sqrt(self.bias_var)

    def __call__(self, x):
        if self.vpu is not None:
            return self.vpu(x)
        if not self.spec.use_quantization:
            xp = self.xp
            if hasattr(self.op, "pad_input"):
                x = self.op.pad_input(xp.asarray(x))
            y = self.op(xp.asarray(x, dtype=xp.float32), self.float_w)
            return (y if self.float_b is None else y + self.float_b) / xp.float32(self.spec.g_algo)
        if self.spec.to_linear:
            # WitinConv2d(to_linear): the WitinLinear result, then the conv wrapper's own int8 clip, computed
            # unrounded in float32: clip(f32(f32(NPU_y/sy)*sy), -128, 127)/sy
            xp, sy = self.xp, self.xp.float32(self.spec.scale_y)
            y = xp.asarray(self.npu(x), dtype=xp.float32) / sy
            return xp.clip(y * sy, -128.0, 127.0).astype(xp.float32) / sy
        return self.npu(x) / self.spec.scale_y


class WitinChipLayer:
    """One witin CIM layer computed as the WTM2101 chip computes it.

    Parameters
    ----------
    layer : simulator.network.Layer
        A Dense, Conv2D, Conv2DTranspose or GRUCell layer whose
        ``attrs["witin"]`` holds its witin parameters.
    params : object or dict
        User overrides with attribute (or key) access to the witin names;
        ``None`` values keep the model's value. May be ``None``.
    xp : module
        NumPy or CuPy.
    rng : Generator
        Random generator (``standard_normal``) for the noise.

    ``forward(x)`` takes NHWC (conv) or (N, features) input and returns the
    layer output in the module's units (``NPU_y / scale_y``); GRUCell layers
    take ``forward(x, h)``. The float activation attached to the layer
    (``config["activation"]``) is applied afterwards, digitally.
    """

    SUPPORTED = ("Dense", "Conv2D", "Conv2DTranspose", "GRUCell")

    def __init__(self, layer, params, xp, rng):
        self.layer = layer
        self.xp = xp
        self.rng = rng
        self.type = layer.type
        where = f"layer {layer.name!r} ({layer.type})"
        model = dict(layer.attrs.get("witin") or {})
        if layer.type not in self.SUPPORTED:
            raise ModelError(f"{where}: witin chip semantics exist for {', '.join(self.SUPPORTED)} layers only")
        w = layer.weights
        use_bias = layer.config.get("use_bias", True)
        if layer.type == "GRUCell":
            self.units = int(w["weight_hh"].shape[0])
            parts = {}
            for part, wkey, bkey in (("ih", "weight_ih", "bias_ih"), ("hh", "weight_hh", "bias_hh")):
                sub = {k: v for k, v in model.items() if k not in ("ih", "hh")}
                sub.update(model.get(part) or {})
                spec = _Spec(f"{where} [{part}]", sub, params, "Dense")
                bias = w.get(bkey) if use_bias else None
                parts[part] = _Product(where, spec, _Dense(w[wkey], xp), w[wkey], bias, xp, rng)
            self.ih, self.hh = parts["ih"], parts["hh"]
            self.spec = self.ih.spec
            self._products = {"ih": self.ih, "hh": self.hh}
            self._position(0)
            return
        spec = _Spec(where, model, params, layer.type)
        self.spec = spec
        if layer.type == "Dense":
            op, kernel = _Dense(w["kernel"], xp), w["kernel"]
        elif layer.type == "Conv2D":
            op, kernel = _Conv2D(layer.config, xp), w["kernel"]
            op.padding_mode = model.get("padding_mode", "zeros")
            if op.padding_mode not in ("zeros", "reflect"):
                raise ModelError(f"{where}: padding_mode {op.padding_mode!r} is not supported (zeros or reflect)")
        else:
            op, kernel = _Conv2DTranspose(layer.config, xp), w["kernel"]
        bias = w.get("bias") if use_bias else None
        self.product = _Product(where, spec, op, kernel, bias, xp, rng)
        self._products = {"": self.product}
        self._position(0)

    def _position(self, image_offset: int) -> None:
        """Key the noise of the next call by its first image's global index (``rng`` a RandomStreams).

        Per-output noise (``noise_mode = "output"``) is positioned by image, so
        an image's noise does not depend on the batch it is in; the per-call
        weight perturbation (``"weight"``) is keyed by the call's first image,
        so it changes with the batch size, as one draw per call does on witin_nn.
        """
        self._next_image = int(image_offset)
        if isinstance(self.rng, RandomStreams):
            for part, product in self._products.items():
                product.rng = self.rng.draws("witin", self.layer.name, part, row0=image_offset)

    # ------------------------------------------------------------------ API
    @property
    def scales(self) -> dict[str, float]:
        s = self.spec
        return {"scale_x": s.scale_x, "scale_weight": s.scale_weight, "scale_y": s.scale_y, "g_value": s.g}

    def forward(self, x, h=None, image_offset: int | None = None):
        """Layer output; ``image_offset`` = global index of image ``x[0]`` (None: after the previous call's)."""
        xp = self.xp
        self._position(self._next_image if image_offset is None else image_offset)
        self._next_image += len(x)
        if self.type == "GRUCell":
            return self._gru(x, h)
        y = self.product(x)
        act = self.layer.config.get("activation")
        if act not in (None, "linear"):
            y = ops.activation(y, act, xp)
        return y

    __call__ = forward

    def npu(self, x):
        """The integer NPU_y of a Dense/Conv layer (for inspection and tests)."""
        return self.product.npu(x)

    def _gru(self, x, h):
        xp = self.xp
        if h is None:
            h = xp.zeros((x.shape[0], self.units), dtype=xp.float64)
        return ops.gru_cell(self.ih(x), self.hh(h), xp.asarray(h, dtype=xp.float64), xp)
