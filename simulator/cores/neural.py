"""NeuralCore: one MVM layer on analog arrays.

Takes the layer's matrix ``W`` (rows = inputs, columns = outputs; for a
convolution the im2col matrix ``(kh*kw*cin, cout)``) in algorithmic units and
batched input vectors ``X`` (M, rows). It

1. quantizes the inputs (DAC: ``dac_bits`` over the layer's input range,
   zero-centred levels; or integer codes for input bit slicing, 8.2/9.2.2),
2. scales them to normalized voltages ``x = X / x_scale`` (full scale = 1),
3. handles the bias: digital (quantized to ``bias_bits``, added after the
   ADCs) or analog (an extra row driven at full scale, counted in NrowsMax),
4. scales weights to ``w = W / W_max`` (``weight_percentile``), splits the rows
   into partitions of at most ``NrowsMax`` (8.1) -- one WrapperCore each -- and
   sums the partitions' digitized results digitally,
5. sets every array's ADC range (``max``, ``granular`` or ``calibrated``, 9.3).

Outputs are in algorithmic units: ``Y = (w . x) * W_max * x_scale + b``.
Everything is batched over M and chunked to ``memory_budget_mb``.
"""
from __future__ import annotations

import math

from simulator.circuits.quantizer import UniformQuantizer
from simulator.cores.mapping import partition_sizes, weight_range
from simulator.cores.numeric import ArrayOptions, InputSlicing
from simulator.cores.wrapper import WrapperCore
from simulator.errors import CalibrationError, ConfigError


class NeuralCore:
    def __init__(
        self, name: str, W, bias, hw, *, options: ArrayOptions, devices, xp, rng, dtype,
        input_range: tuple[float, float] | None = None,
        adc_calibration=None,
        input_signed: bool | None = None,
        lloyd=None,
        wmax: float | None = None,
    ) -> None:
        self.name, self.hw, self.xp, self.dtype, self.opt = name, hw, xp, dtype, options
        #: optional profiling hook ``probe(X)``: raw input activations (M, n_in) before the DAC
        self.probe = None
        W = xp.asarray(W, dtype=dtype)
        n_in, n_out = W.shape
        self.n_in, self.n_out = n_in, n_out
        self.input_range = tuple(float(v) for v in input_range) if input_range is not None else None
        if input_signed is None:
            input_signed = self.input_range is None or self.input_range[0] < 0
        self.input_signed = input_signed

        # ---- inputs: DAC or bit slicing --------------------------------------
        self.dac = UniformQuantizer(0)
        self.slicing = InputSlicing()
        if hw.dac_bits > 0 and self.input_range is None:
            raise ConfigError(
                f"layer {name!r}: dac_bits = {hw.dac_bits} needs the layer's input range: set "
                f"layers.{name}.dac_range, use calibrated ranges (xbarsim calibrate --what dac), or a model that records it"
            )
        if self.input_range is not None:
            lo, hi = self.input_range
            self.x_scale = max(abs(lo), abs(hi)) or 1.0
        else:
            self.x_scale = 1.0
        if hw.input_bitslicing:
            B = hw.dac_bits
            if input_signed:
                self.slicing = InputSlicing(True, B - 1, True, float(2 ** (B - 1) - 1), hw.ADC_per_ibit)
            else:
                self.x_scale = self.input_range[1]
                self.slicing = InputSlicing(True, B, False, float(2**B - 1), hw.ADC_per_ibit)
        elif hw.dac_bits > 0:
            self.dac = UniformQuantizer(hw.dac_bits, *self.input_range)

        # ---- bias -------------------------------------------------------------
        self.bias = None
        self.analog_bias = bias is not None and not hw.digital_bias
        if bias is not None:
            b = xp.asarray(bias, dtype=dtype)
            if self.analog_bias:
                W = xp.concatenate([W, (b / self.x_scale)[None, :]], axis=0)
            else:
                if hw.bias_bits > 0:
                    bmax = float(xp.max(xp.abs(b))) or 1.0
                    b = UniformQuantizer(hw.bias_bits, -bmax, bmax)(b, xp)
                self.bias = b

        # ---- weights -> partitions of conductance arrays ----------------------
        # W_max: from weight_percentile, or fixed by the caller (witin int8 weights: 127 / scale_weight)
        self.Wmax = float(wmax) if wmax is not None else weight_range(W, hw.weight_percentile, xp)
        w = xp.clip(W / self.Wmax, -1.0, 1.0)
        encodings = None
        if lloyd is not None:  # non-uniform levels: encodings per partition come from the quantizer
            w, encodings = lloyd(w)
        sizes = partition_sizes(W.shape[0], hw.NrowsMax)
        self.row_slices = []
        start = 0
        for n in sizes:
            self.row_slices.append(slice(start, start + n))
            start += n
        self.wrappers = [
            WrapperCore(
                w[rs], weight_bits=hw.weight_bits, Nslices=hw.Nslices, style=hw.style,
                balanced_style=hw.balanced_style, digital_offset=hw.digital_offset, options=options,
                devices=devices, xp=xp, rng=rng, dtype=dtype, name=f"{name}/part{p}",
                encoding=None if encodings is None else encodings(rs),
            )
            for p, rs in enumerate(self.row_slices)
        ]
        self._set_adcs(adc_calibration)

    # ------------------------------------------------------------------ ADC
    @property
    def rows_max(self) -> int:
        return max(s.stop - s.start for s in self.row_slices)

    @property
    def n_slices(self) -> int:
        return self.wrappers[0].encoding.n_slices

    @property
    def output_signed(self) -> bool:
        return self.hw.style == "BALANCED" or self.input_signed

    def y_max(self) -> float:
        """Largest possible array output (raw current units): every input and weight at full scale."""
        full = 1.0 - self.opt.Gmin if self.hw.style == "BALANCED" else 1.0
        return self.rows_max * full

    def algorithmic_gain(self) -> float:
        """Factor from raw ADC-input units to algorithmic units (unsliced layers)."""
        g0 = self.wrappers[0].encoding.gains[0]
        return self.Wmax * self.x_scale * g0 / (1.0 - self.opt.Gmin)

    def adc_limits(self, calibration=None) -> list[tuple[float, float]]:
        """ADC (lo, hi) in raw units for every weight slice."""
        hw = self.hw
        S = self.n_slices
        ymax = self.y_max()
        signed = self.output_signed
        opt = hw.adc_range_option
        if opt == "max":
            return [(-ymax if signed else 0.0, ymax)] * S
        if opt == "granular":
            levels = self.wrappers[0].encoding.device_levels
            delta = (1.0 - self.opt.Gmin) / levels
            B = hw.adc_bits
            if signed:
                return [(-(2 ** (B - 1) - 1) * delta, (2 ** (B - 1) - 1) * delta)] * S
            return [(0.0, (2**B - 1) * delta)] * S
        # calibrated: inline config values first, then the calibration file
        exps = hw.adc_exponents
        rng_alg = hw.adc_range
        if exps is None and rng_alg is None and calibration is not None:
            if S > 1 or calibration.get("exponents") is not None:
                exps = calibration.get("exponents")
            rng_alg = calibration.get("range")
        if S > 1 or (exps is not None and rng_alg is None):  # exponents C_i (eqs. 9.1-9.2), also unsliced
            if exps is None:
                raise CalibrationError(
                    f"layer {self.name!r}: adc_range_option = 'calibrated' with Nslices = {S} needs per-slice "
                    f"exponents C_i (layers.{self.name}.adc_exponents or a calibration file from `xbarsim calibrate`)"
                )
            if len(exps) != S:
                raise CalibrationError(f"layer {self.name!r}: {len(exps)} ADC exponents given, expected Nslices = {S}")
            return [(-ymax * 2.0**-c if signed else 0.0, ymax * 2.0**-c) for c in exps]
        if rng_alg is None:
            raise CalibrationError(
                f"layer {self.name!r}: adc_range_option = 'calibrated' but no ADC range is given for it "
                f"(layers.{self.name}.adc_range, calibration_file, or run `xbarsim calibrate`)"
            )
        lo, hi = (float(v) for v in rng_alg)
        if calibration is not None and calibration.get("units") == "normalized" and hw.adc_range is None:
            lo, hi = lo * self.Wmax * self.x_scale, hi * self.Wmax * self.x_scale  # normalized w.x -> algorithmic
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise CalibrationError(f"layer {self.name!r}: calibrated ADC range ({lo}, {hi}) must be finite with min < max")
        gain = self.algorithmic_gain()
        return [(lo / gain, hi / gain)]

    def _set_adcs(self, calibration) -> None:
        if self.hw.adc_bits == 0:
            return
        limits = self.adc_limits(calibration)
        self.adc_quantizers = [UniformQuantizer(self.hw.adc_bits, lo, hi) for lo, hi in limits]
        for wrapper in self.wrappers:
            for core, q in zip(wrapper.cores, self.adc_quantizers):
                core.set_adc(q)

    # -------------------------------------------------------------- forward
    @property
    def can_prequantize(self) -> bool:
        """Whether the DAC (or the bit-slicing encoder) may run on the activations before im2col.

        It is elementwise, so quantizing each activation once gives the same values
        as quantizing its kh*kw copies in the window matrix, provided the padding
        value 0 maps to 0. Off while a profiling probe wants the raw inputs.
        """
        if self.probe is not None:
            return False
        if self.slicing.enabled:
            return True
        if not self.dac.enabled:
            return False
        zero = self.xp.zeros(1, dtype=self.dtype)
        return float(self.dac(zero, self.xp)[0]) == 0.0

    def prequantize(self, X):
        """Elementwise input encoding of activations ``X``: normalized DAC voltages, or integer codes when bit slicing."""
        xp = self.xp
        X = xp.asarray(X, dtype=self.dtype)
        if self.slicing.enabled:
            L = self.slicing.divisor
            lo = -L if self.slicing.signed else 0.0
            t = xp.multiply(X, L / self.x_scale)
            xp.rint(t, out=t)
            return xp.clip(t, lo, L, out=t)
        t = self.dac(X, xp)
        t /= self.x_scale
        return t

    def encode_inputs(self, X, prequantized: bool = False):
        """(x, x_hw): what drives the rows (voltages or integer codes) and the normalized voltages.

        ``prequantized``: ``X`` already went through :meth:`prequantize`.
        """
        xp = self.xp
        if self.slicing.enabled:
            L = self.slicing.divisor
            x_int = X if prequantized else self.prequantize(X)
            if self.analog_bias:
                x_int = xp.concatenate([x_int, xp.full((x_int.shape[0], 1), L, dtype=x_int.dtype)], axis=1)
            return x_int, x_int / L
        if prequantized:
            x_hw = X
        elif self.dac.enabled:
            x_hw = self.dac(X, xp)
            x_hw /= self.x_scale
        else:
            x_hw = X / self.x_scale
        if self.analog_bias:
            x_hw = xp.concatenate([x_hw, xp.ones((x_hw.shape[0], 1), dtype=x_hw.dtype)], axis=1)
        return x_hw, x_hw

    def _chunk_rows(self) -> int:
        itemsize = self.xp.dtype(self.dtype).itemsize
        nb = self.slicing.n_bits if self.slicing.enabled else 1
        cols = self.n_out * self.n_slices + 1
        per_row = itemsize * (3 * self.n_in + nb * (self.rows_max + 2 * cols) + 4 * cols)
        return max(1, int(self.opt.memory_budget // per_row))

    def __call__(self, X, prequantized: bool = False):
        """Layer output (M, n_out) in algorithmic units for inputs X (M, n_in), before the activation.

        ``prequantized``: ``X`` holds :meth:`prequantize` outputs (the executor
        encodes activations before im2col when :attr:`can_prequantize`).
        """
        xp = self.xp
        X = xp.asarray(X, dtype=self.dtype)
        M = X.shape[0]
        chunk = self._chunk_rows()
        if M <= chunk:
            return self._forward(X, prequantized)
        out = xp.empty((M, self.n_out), dtype=self.dtype)
        for s in range(0, M, chunk):
            out[s : s + chunk] = self._forward(X[s : s + chunk], prequantized)
        return out

    def _forward(self, X, prequantized: bool = False):
        xp = self.xp
        if self.probe is not None:
            self.probe(X)
        x, x_hw = self.encode_inputs(X, prequantized)
        y = None
        need_sum = self.hw.style == "OFFSET"
        for rs, wrapper in zip(self.row_slices, self.wrappers):
            xs = x[:, rs]
            x_sum = x_hw[:, rs].sum(axis=1, keepdims=True) if need_sum else None
            part = wrapper.mvm(xs, x_sum, self.slicing)
            y = part if y is None else y + part
        y = y * (self.Wmax * self.x_scale)
        if self.bias is not None:
            y = y + self.bias
        return y
