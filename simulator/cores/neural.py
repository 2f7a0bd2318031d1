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

Rows and images. ``rng`` is the simulation's
:class:`~simulator.backend.RandomStreams` (a Generator or an int seed is
turned into one). Read noise is keyed by the *global* row of an MVM batch:
a caller passes ``row0`` = the global index of the batch's first row, where
global rows number the images of the whole test selection times the rows each
image contributes: ``row = image_index * rows_per_image + r`` (``r`` = the
sliding window ``oh * Wo + ow`` of a convolution, the token of a Dense layer
on sequences, 0 for a plain Dense layer). The executor passes it; without it
the core continues from the rows it has seen so far (fresh noise per call).
The same image then gets the same noise whatever batch or chunk it is in.
"""
from __future__ import annotations

from simulator.backend import as_streams, backend_of
from simulator.circuits.converters import make_dac
from simulator.cores.adc_range import AdcRange, LayerUnits
from simulator.cores.mapping import SliceEncoding, encode, partition_sizes, slice_columns, weight_range
from simulator.cores.numeric import ArrayOptions, InputSlicing, input_code_shift
from simulator.cores.wrapper import WrapperCore
from simulator.errors import ConfigError, DataError
from simulator.quantization.uniform import UniformQuantizer, integer_codes


def _slices(sizes: list[int]) -> list[slice]:
    """Consecutive slices of the given sizes."""
    out, start = [], 0
    for n in sizes:
        out.append(slice(start, start + n))
        start += n
    return out


#: global MVM row of the first drift-compensation reference read: far beyond any image's rows,
#: so keyed read noise of reference reads never repeats an image's
REFERENCE_ROW0 = 2**48


class NeuralCore:
    """One MVM layer: DAC, bias, row/column partitions of WrapperCores, the layer's ADC range policy."""

    def __init__(
        self, name: str, W, bias, hw, *, options: ArrayOptions, devices, xp, rng, dtype,
        input_range: tuple[float, float] | None = None,
        adc_calibration=None,
        input_signed: bool | None = None,
        lloyd=None,
        wmax: float | None = None,
    ) -> None:
        """``W`` (n_in, n_out) and ``bias`` in algorithmic units; ``hw`` the layer's config;
        ``input_range`` the DAC range (algorithmic units); ``adc_calibration`` the layer's entry of a
        calibration file; ``lloyd`` an encoder from :func:`simulator.cores.mapping.lloyd_encoder`;
        ``wmax`` a fixed weight scale (else from ``weight_percentile``)."""
        self.name, self.hw, self.xp, self.dtype, self.opt = name, hw, xp, dtype, options
        rng = as_streams(rng, backend_of(xp))
        self._next_row = 0  # global row of the next call without row0
        #: optional observer (see :mod:`simulator.observe`), set with :meth:`set_observer`
        self.observer = None
        self._W_ideal, self._b_ideal, self._ideal_cache = W, bias, None  # the exact layer, for :meth:`ideal`
        W = xp.asarray(W, dtype=dtype)
        self.n_in, self.n_out = W.shape
        self.input_range = tuple(float(v) for v in input_range) if input_range is not None else None
        if input_signed is None:
            input_signed = self.input_range is None or self.input_range[0] < 0
        self.input_signed = input_signed
        self._set_inputs(hw)
        W = self._set_bias(W, bias, hw)
        # W_max: from weight_percentile, or fixed by the caller (witin int8 weights: 127 / scale_weight)
        self.Wmax = float(wmax) if wmax is not None else weight_range(W, hw.weight_percentile, xp)
        w = xp.clip(W / self.Wmax, -1.0, 1.0)
        row_encodings = None
        if lloyd is not None:  # non-uniform levels: encodings per partition come from the quantizer
            w, row_encodings = lloyd(w)
        self.row_slices = _slices(partition_sizes(W.shape[0], hw.NrowsMax))
        # columns: partitions of at most NcolsMax outputs (CrossSim 3 cols_max), each its own physical arrays
        self.col_slices = _slices(partition_sizes(W.shape[1], getattr(hw, "NcolsMax", 0)))
        #: (row slice, column slice) of every wrapper, in the order of :attr:`wrappers`
        self.blocks = [(rs, cs) for rs in self.row_slices for cs in self.col_slices]
        encodings = self._encodings(w, row_encodings)
        first = encodings[0]
        #: the layer's units (raw array outputs <-> normalized <-> algorithmic) and its ADC policy
        self.units = LayerUnits(options.Gmin, self.Wmax, self.x_scale, tuple(first.gains), first.device_levels,
                                self.rows_max, hw.style, self.input_signed)
        self.adc_range = AdcRange(hw, self.units, adc_calibration, name)
        split = len(self.col_slices) > 1
        grid = self._input_codes()  # integer input codes: exact int8 products where the weights allow
        self._grid = grid
        self._code_shift = 0 if grid is None else input_code_shift(*grid[1:])  # int8 storage of the DAC codes
        self.wrappers = [
            WrapperCore(enc, units=self.units, digital_offset=hw.digital_offset, options=options, devices=devices,
                        xp=xp, rng=rng, dtype=dtype, adc_range=self.adc_range,
                        input_grid=grid, name=f"{name}/part{p}" + (f"c{q}" if split else ""))
            for enc, (p, q) in zip(encodings, ((p, q) for p in range(len(self.row_slices))
                                               for q in range(len(self.col_slices))))
        ]
        self._set_compensation(hw, devices)

    def _input_codes(self) -> tuple | None:
        """(unit, kmin, kmax): every array input is ``k * unit`` (normalized volts) with integer ``k`` in
        ``[kmin, kmax]``; None when not.

        True for a DAC on a grid through zero (zero-centred signed, or unsigned
        from 0) of at most 256 levels applied to every input (:meth:`encode_inputs`,
        :meth:`prequantize`), with an analog bias row driven at full scale only
        when full scale is itself one of the codes.
        """
        q = self.dac
        if self.slicing.enabled or not isinstance(q, UniformQuantizer) or not q.enabled:
            return None
        kmin, kmax = q.k_range
        if kmax - kmin > 255 or not (q.signed or q.lo == 0):
            return None
        unit = q.step / self.x_scale
        full = 1.0 / unit  # code of the analog bias row (driven at full scale)
        if self.analog_bias and (abs(full - round(full)) > 1e-6 * full or not kmin <= round(full) <= kmax):
            return None
        return unit, kmin, kmax

    def _set_inputs(self, hw) -> None:
        """DAC (``dac_bits`` over the input range) or input bit slicing, and the input full scale ``x_scale``."""
        name = self.name
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
            if self.input_signed:
                self.slicing = InputSlicing(True, B - 1, True, float(2 ** (B - 1) - 1), hw.ADC_per_ibit,
                                            hw.input_slice_size)
            else:
                self.x_scale = self.input_range[1]
                self.slicing = InputSlicing(True, B, False, float(2**B - 1), hw.ADC_per_ibit, hw.input_slice_size)
        elif hw.dac_bits > 0:
            dac_type = getattr(hw, "dac_type", "generic")
            if dac_type == "generic":
                self.dac = UniformQuantizer(hw.dac_bits, *self.input_range)
            else:
                model = make_dac(dac_type, hw.dac_bits, *self.input_range)
                self.dac = getattr(model, "q", model)  # the model's UniformQuantizer grid

    def _set_bias(self, W, bias, hw):
        """Digital bias (quantized to ``bias_bits``, added after the ADCs) or an analog row; returns the MVM matrix."""
        xp = self.xp
        self.bias = None
        self.analog_bias = bias is not None and not hw.digital_bias
        if bias is None:
            return W
        b = xp.asarray(bias, dtype=self.dtype)
        if self.analog_bias:
            return xp.concatenate([W, (b / self.x_scale)[None, :]], axis=0)
        if hw.bias_bits > 0:
            bmax = float(xp.max(xp.abs(b))) or 1.0
            b = UniformQuantizer(hw.bias_bits, -bmax, bmax)(b, xp)
        self.bias = b
        return W

    def _encodings(self, w, row_encodings) -> list[SliceEncoding]:
        """The conductance encoding of every block of :attr:`blocks` (uniform levels, or the Lloyd encoder's)."""
        hw, split = self.hw, len(self.col_slices) > 1
        out = []
        for p, rs in enumerate(self.row_slices):
            enc_rows = None if row_encodings is None else row_encodings(rs)
            for q, cs in enumerate(self.col_slices):
                if enc_rows is not None:
                    out.append(slice_columns(enc_rows, cs) if split else enc_rows)
                    continue
                out.append(encode(w[rs, cs], weight_bits=hw.weight_bits, Nslices=hw.Nslices, style=hw.style,
                                  balanced_style=hw.balanced_style, xp=self.xp,
                                  layer=f"{self.name}/part{p}" + (f"c{q}" if split else "")))
        return out

    def _set_compensation(self, hw, devices) -> None:
        """Drift compensation: reference reads at programming and at each time."""
        self.compensation = getattr(hw, "drift_compensation", "none")
        self.drift_scale = None  #: digital output factor(s) of the compensation (None: off)
        self._ref0 = None
        if self.compensation != "none" and devices is not None:
            first = self.t_drift
            self._set_core_times(0.0)
            self._ref0 = self.reference_readout()
            self._set_core_times(first)
            self._compensate()

    # ------------------------------------------------------------------ ADC
    @property
    def rows_max(self) -> int:
        return max(s.stop - s.start for s in self.row_slices)

    @property
    def n_slices(self) -> int:
        return self.units.n_slices

    @property
    def output_signed(self) -> bool:
        return self.units.output_signed

    def y_max(self) -> float:
        """Largest possible array output (raw current units): every input and weight at full scale."""
        return self.units.y_max()

    def algorithmic_gain(self) -> float:
        """Factor from raw ADC-input units of the first slice to algorithmic units (:class:`LayerUnits`)."""
        return self.units.algorithmic_gain(0)

    def adc_limits(self) -> list[tuple[float, float]]:
        """ADC (lo, hi) in raw units for every weight slice (:class:`~simulator.cores.adc_range.AdcRange`)."""
        return self.adc_range.limits

    @property
    def adc_quantizers(self) -> list[UniformQuantizer]:
        """The ADC grid of every weight slice, raw units (empty with ``adc_bits = 0``)."""
        return self.adc_range.quantizers

    # -------------------------------------------------------------- observing
    def set_observer(self, observer) -> None:
        """Report every MVM batch to ``observer`` (None: stop); see :mod:`simulator.observe`.

        The observer gets ``layer(X, Y)`` per batch (inputs before the DAC,
        outputs in algorithmic units) and hands each NumericCore
        ``observer.array(s, columns)`` (``s``: its weight slice, ``columns``: the
        slice of the layer's outputs its array holds; None is allowed) that gets
        its ADC inputs and column currents.
        """
        self.observer = observer
        for (_, cs), wrapper in zip(self.blocks, self.wrappers):
            for s, core in enumerate(wrapper.cores):
                core.observer = None if observer is None else observer.array(s, cs)

    def ideal(self, X):
        """Exact layer output ``X @ W + b`` (float64, algorithmic units) of the matrix and bias this core was built from."""
        xp = self.xp
        if self._ideal_cache is None:
            W = xp.asarray(self._W_ideal, dtype=xp.float64)
            b = None if self._b_ideal is None else xp.asarray(self._b_ideal, dtype=xp.float64)
            self._ideal_cache = (W, b)
        W, b = self._ideal_cache
        y = xp.asarray(X, dtype=xp.float64) @ W
        return y + b if b is not None else y

    @property
    def input_quantizer(self):
        """The input quantizer as a :class:`UniformQuantizer` in algorithmic units (DAC, or the
        equivalent grid of bit-sliced integer codes), or None when inputs are not quantized."""
        if self.slicing.enabled:
            lo = -self.x_scale if self.slicing.signed else 0.0
            return UniformQuantizer(self.hw.dac_bits, lo, self.x_scale)
        return self.dac if self.dac.enabled else None

    # ------------------------------------------------------------ drift in time
    def _numeric_cores(self):
        return [core for wrapper in self.wrappers for core in wrapper.cores]

    @property
    def t_drift(self) -> float | None:
        """Days since programming the arrays are read at (None: no device models)."""
        return self._numeric_cores()[0].t_drift

    def _set_core_times(self, t_days: float) -> None:
        for core in self._numeric_cores():
            core.set_time(t_days)

    def set_time(self, t_days: float) -> None:
        """Read the arrays ``t_days`` days after programming (drift from the same programmed state).

        With ``drift_compensation`` on, one reference read at the new time
        rescales the digital output (see :meth:`reference_readout`).
        """
        if t_days == self.t_drift:
            return
        self._set_core_times(t_days)
        if self._ref0 is not None:
            self._compensate()

    def reference_readout(self):
        """Reference read of the arrays as they are now: mean ``|y|`` over a fixed calibration input.

        The calibration input is the set of one-hot vectors at full scale (each
        row driven alone, as aihwkit's drift compensation does): ``n_in`` extra
        MVMs per layer and time. They run through the analog path (DAC, read
        noise, parasitics, current limits; no digital bias, no compensation) but
        not the column ADCs: a one-hot read is far below the LSB of an ADC sized
        for whole dot products, so the reference is read at full resolution (a
        calibration read-out channel). Returns the mean over rows and columns
        (``"global"``, a scalar) or over rows per column (``"column"``, shape (n_out,)).
        """
        xp = self.xp
        saved = [(c, c.observer, c.adc) for c in self._numeric_cores()]
        observer, self.observer = self.observer, None
        for c, _, _ in saved:
            c.observer = None
            c.adc = UniformQuantizer(0)
        try:
            total = xp.zeros(self.n_out, dtype=self.dtype)
            step = max(1, min(self.n_in, self._chunk_rows()))
            for s in range(0, self.n_in, step):
                m = min(step, self.n_in - s)
                X = xp.zeros((m, self.n_in), dtype=self.dtype)
                X[xp.arange(m), s + xp.arange(m)] = self.x_scale
                total += xp.abs(self._analog_output(X, row0=REFERENCE_ROW0 + s)).sum(axis=0)
        finally:
            for c, obs, adc in saved:
                c.observer, c.adc = obs, adc
            self.observer = observer
        per_col = total / self.n_in
        return per_col.mean() if self.compensation == "global" else per_col

    def _compensate(self) -> None:
        """Output factor ``readout(programmed) / readout(now)`` (1 where the current read is 0)."""
        xp = self.xp
        now = self.reference_readout()
        ok = now > 0
        self.drift_scale = xp.where(ok, self._ref0 / xp.where(ok, now, 1.0), 1.0).astype(self.dtype)

    # -------------------------------------------------------------- forward
    @property
    def can_prequantize(self) -> bool:
        """Whether the DAC (or the bit-slicing encoder) may run on the activations before im2col.

        It is elementwise, so quantizing each activation once gives the same values
        as quantizing its kh*kw copies in the window matrix, provided the padding
        value 0 maps to 0. Off while an observer (profiling, :mod:`simulator.observe`) wants the raw inputs.
        """
        if self.observer is not None:
            return False
        if self.slicing.enabled:
            return True
        if not self.dac.enabled:
            return False
        zero = self.xp.zeros(1, dtype=self.dtype)
        return float(self.dac(zero, self.xp)[0]) == 0.0

    @property
    def takes_codes(self) -> bool:
        """Whether :meth:`prequantize` hands out int8 DAC codes rather than voltages.

        The codes (``k - shift``, :func:`~simulator.cores.numeric.input_code_shift`)
        are a quarter of the bytes through im2col, and every array multiplies
        them in int8 as they are (:attr:`NumericCore.takes_codes`), so no pass
        turns voltages back into codes. Needs a DAC on an integer grid, BALANCED
        arrays on their levels and no observer; the outputs are the ones the
        voltages give, bit for bit.
        """
        return (self._grid is not None and self.observer is None
                and all(core.takes_codes for w in self.wrappers for core in w.cores))

    def prequantized_zero(self, X) -> float:
        """What 0 V is in :meth:`prequantize`'s output ``X``: the padding value of a convolution's windows."""
        return float(-self._code_shift) if X.dtype == self.xp.int8 else 0.0

    def prequantize(self, X, codes: bool | None = None):
        """Elementwise input encoding of activations ``X``: normalized DAC voltages, or integer codes when bit slicing.

        ``codes`` (default :attr:`takes_codes`): int8 DAC codes instead of voltages.
        """
        xp = self.xp
        X = xp.asarray(X, dtype=self.dtype)
        self._refuse_non_finite(X)
        if self.slicing.enabled:
            L = self.slicing.divisor
            return integer_codes(X, L / self.x_scale, -L if self.slicing.signed else 0.0, L, xp)
        if self.takes_codes if codes is None else codes:
            k = self.dac.codes(X, xp)  # the levels the voltages below sit on, k * unit
            if self._code_shift:
                k -= self._code_shift
            return k.astype(xp.int8)
        t = self.dac(X, xp)
        t /= self.x_scale
        return t

    def _refuse_non_finite(self, X) -> None:
        """DataError when activations ``X`` hold NaN or infinite values (a DAC has no code for them).

        Only a model's own ops can make them (inputs and weights are checked on
        loading); the integer codes would otherwise turn them into numbers. One
        sum detects them (checked element-wise only when the sum is not finite).
        """
        xp = self.xp
        if X.size and not bool(xp.isfinite(X.sum())) and not bool(xp.isfinite(X).all()):
            bad = int(X.size - int(xp.count_nonzero(xp.isfinite(X))))
            raise DataError(f"layer {self.name!r}: {bad} of its {X.size} input values are NaN or infinite "
                            "(computed by the model's ops before it); an analog array cannot be driven by them")

    def encode_inputs(self, X, prequantized: bool = False):
        """(x, x_hw): what drives the rows (voltages or integer codes) and the normalized voltages.

        ``prequantized``: ``X`` already went through :meth:`prequantize` (int8 ``X``:
        DAC codes, returned as both; only OFFSET arrays read ``x_hw``, and they take no codes).
        """
        xp = self.xp
        if prequantized and X.dtype == xp.int8:
            if self.analog_bias:  # the bias row at full scale: code 1 / unit
                full = round(1.0 / self._grid[0]) - self._code_shift
                X = xp.concatenate([X, xp.full((X.shape[0], 1), full, dtype=xp.int8)], axis=1)
            return X, X
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

    def __call__(self, X, prequantized: bool = False, row0: int | None = None):
        """Layer output (M, n_out) in algorithmic units for inputs X (M, n_in), before the activation.

        ``prequantized``: ``X`` holds :meth:`prequantize` outputs (the executor
        encodes activations before im2col when :attr:`can_prequantize`).
        ``row0``: global row of ``X[0]`` (see the module notes); None continues
        after the previous call's rows.
        """
        xp = self.xp
        if not (prequantized and X.dtype == xp.int8):  # int8: DAC codes from prequantize
            X = xp.asarray(X, dtype=self.dtype)
            if not prequantized:
                self._refuse_non_finite(X)
        M = X.shape[0]
        if row0 is None:
            row0 = self._next_row
        self._next_row = int(row0) + M
        chunk = self._chunk_rows()
        if M <= chunk:
            return self._forward(X, prequantized, int(row0))
        out = xp.empty((M, self.n_out), dtype=self.dtype)
        for s in range(0, M, chunk):
            out[s : s + chunk] = self._forward(X[s : s + chunk], prequantized, int(row0) + s)
        return out

    def _forward(self, X, prequantized: bool = False, row0: int = 0):
        y = self._analog_output(X, prequantized, row0)  # a fresh array: scaled in place below
        if self.drift_scale is not None:
            y *= self.drift_scale
        if self.bias is not None:
            y += self.bias
        if self.observer is not None:
            self.observer.layer(X, y)
        return y

    def _analog_output(self, X, prequantized: bool = False, row0: int = 0):
        """Digitized array result ``(w . x) * W_max * x_scale`` summed over partitions (no bias, no compensation)."""
        x, x_hw = self.encode_inputs(X, prequantized)
        y = None
        need_sum = self.hw.style == "OFFSET"
        if len(self.col_slices) > 1:  # column partitions: each writes its outputs; row partitions add up
            y = self.xp.zeros((x.shape[0], self.n_out), dtype=x.dtype)
        for (rs, cs), wrapper in zip(self.blocks, self.wrappers):
            xs = x[:, rs]
            x_sum = x_hw[:, rs].sum(axis=1, keepdims=True) if need_sum else None
            part = wrapper.mvm(xs, x_sum, self.slicing, row0, scale=self.units.scale)
            if len(self.col_slices) > 1:
                y[:, cs] += part
            else:
                y = part if y is None else y + part
        return y  # in algorithmic units: the wrappers applied W_max * x_scale with their slice gains
