"""NumericCore: one physical array and its column periphery.

Holds strictly positive conductances in normalized units (``G_max = 1``,
``G_min = 1/On_off_ratio``): the positive device plane, the negative one for
BALANCED cells, and an optional unit column (analog offset). At construction
the device models are applied (programming error, drift: sampled once per
run). Each MVM then applies read noise (re-sampled every MVM and every input
bit), column current limits, parasitic resistance, input bit slicing and the
ADC.

Units: inputs ``x`` are normalized voltages (full-scale input = 1); outputs
are column currents in units of ``G_max * V_full`` -- for BALANCED the
difference of the two devices' columns, taken in analog before the ADC.
MVMs are batched: ``x`` has shape (M, R) with M = images x sliding windows.

Randomness is keyed (:class:`simulator.backend.RandomStreams`), never drawn
in execution order: the programming error and drift of a device plane come
from stream ``("program", name, polarity)`` (``name`` = ``<core>/part<p>/slice<s>``,
polarity ``pos``/``neg``), and read noise from stream ``("read", name, tag,
bit)`` at positions ``row * n_cols + col``, where ``row`` is the *global* MVM
row: the caller passes ``row0``, the global index of its batch's first row
(for the executor, ``image index * rows per image + window``; see
:meth:`simulator.cores.neural.NeuralCore.__call__`). So the noise of an image
does not depend on the chunk or batch it is computed in.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from simulator.backend import as_streams, backend_of, has_int8_matmul, int8_matmul
from simulator.quantization.uniform import UniformQuantizer, integer_codes

log = logging.getLogger("xbarsim.cores")
_said: set[str] = set()


def log_once(message: str) -> None:
    """Log a message once per process (WARNING: it changes speed, not results)."""
    if message not in _said:
        _said.add(message)
        log.warning(message)


def input_code_shift(kmin: int, kmax: int) -> int:
    """What int8 storage subtracts from input codes in ``[kmin, kmax]``: 0 when they fit int8, else ``kmin + 128``."""
    return int(kmin) + 128 if kmin < -128 or kmax > 127 else 0


def uniform_view(a, xp):
    """``a`` itself, or a read-only broadcast view of its one value when every element is equal (no memory).

    The read-noise stds of a state-independent noise model are one number per
    array; stored whole they would take as much memory as the conductances.
    """
    if a is None or a.ndim == 0 or a.size <= 1 or not bool(xp.all(a == a.reshape(-1)[0])):
        return a
    return xp.broadcast_to(a.reshape(-1)[:1].copy().reshape((1,) * a.ndim), a.shape)  # a copy: a itself is freed


@dataclass(frozen=True)
class InputSlicing:
    """How inputs reach the array: all at once (DAC) or one bit at a time (8.2)."""

    enabled: bool = False
    n_bits: int = 0  # magnitude bits applied one at a time
    signed: bool = False  # sign bit handled by a negative input voltage
    divisor: float = 1.0  # x_hw = x_int / divisor
    adc_per_bit: bool = False
    slice_size: int = 1  # input bits applied per step (CrossSim 3 input_slice_size)

    @property
    def n_steps(self) -> int:
        """Input slices applied one after the other: ceil(n_bits / slice_size)."""
        return -(-self.n_bits // self.slice_size)


@dataclass(frozen=True)
class ArrayOptions:
    """Per-layer array settings shared by the NumericCores of a layer."""

    Gmin: float
    read_noise_mode: str = "auto"  # "auto" | "exact" | "output"
    Rp: float = 0.0
    topology: str | None = None
    Verr_th: float = 2e-4
    max_iter: int = 200
    Icol_limit: float = 0.0  # Icol_max / Icell_max in normalized current units (0 = none)
    memory_budget: float = 512e6  # bytes for one chunk of per-MVM temporaries
    # CrossSim 3: separate wire resistances (units of Rmin; None = Rp; Rp is then the larger of the two)
    Rp_row: float | None = None
    Rp_col: float | None = None
    subtract_in_xbar: bool = True  # False: BALANCED planes digitized separately, subtracted digitally


class NumericCore:
    """One array: conductance planes, device effects, read-out and ADC."""

    def __init__(self, v_pos, v_neg, v_unit, *, options: ArrayOptions, devices, xp, rng, dtype, name: str = "",
                 adc=None, levels: int | None = None, input_grid: tuple | None = None) -> None:
        """``adc``: the array's ADC in raw column-current units, the same for every column and input bit
        (a UniformQuantizer or a circuit model from :mod:`simulator.circuits.converters`; None: no ADC).
        ``levels``: the device levels of the planes (``v = code / levels``; None: continuous), which lets
        products of integer input codes run exactly in int8; ``input_grid`` = ``(unit, kmin, kmax)`` declares
        the inputs integer codes (see :meth:`_set_input_grid`; None: they are not)."""
        self.xp, self.dtype, self.opt, self.name = xp, dtype, options, name
        self.levels = levels
        self._x_unit = None  # voltage of one input code (input_grid); None: inputs are not integer codes
        self._x_shift = 0  # subtracted from the input codes so that they fit int8 (unsigned 8-bit codes)
        if input_grid is not None:
            self._set_input_grid(*input_grid)
        #: keyed random streams (a RandomStreams; a Generator or int seed is turned into one)
        self.streams = as_streams(rng, backend_of(xp))
        #: BALANCED with subtract_current_in_xbar = false: one ADC per device plane
        self.separate_adc = v_neg is not None and not options.subtract_in_xbar
        self._plane = None  # "pos" / "neg" while one plane is read alone
        Gmin = options.Gmin
        target_pos = (Gmin + (1 - Gmin) * xp.asarray(v_pos, dtype=dtype)).astype(dtype)
        if v_unit is not None:  # analog offset: one extra column at the unit conductance
            unit = xp.full((target_pos.shape[0], 1), Gmin + (1 - Gmin) * v_unit, dtype=dtype)
            target_pos = xp.concatenate([target_pos, unit], axis=1)
        self.has_unit = v_unit is not None
        self.devices = devices
        target_neg = None
        if v_neg is not None:
            target_neg = (Gmin + (1 - Gmin) * xp.asarray(v_neg, dtype=dtype)).astype(dtype)
        #: programmed planes (error and stuck cells drawn once); drift is applied from them per time
        self._states = None
        self.t_drift = None
        G_pos, G_neg = target_pos, target_neg
        if devices is not None:
            program = self.streams.generator  # one stream per device plane
            self._states = (devices.program_state(target_pos, xp, program("program", name, "pos")),
                            None if target_neg is None
                            else devices.program_state(target_neg, xp, program("program", name, "neg")))
            self.t_drift = devices.times[0]
            G_pos = devices.at_time(self._states[0], self.t_drift, xp)
            G_neg = None if target_neg is None else devices.at_time(self._states[1], self.t_drift, xp)
        self.adc = UniformQuantizer(0) if adc is None else adc
        self._set_conductances(G_pos, G_neg)
        #: optional observer with ``adc(values, quantizer, input_bit)`` (raw ADC inputs (M, C) right
        #: before the ADC; input_bit None, or k per input bit) and ``current_limit(currents, limit)``,
        #: set by :meth:`NeuralCore.set_observer` (see :mod:`simulator.observe`)
        self.observer = None

    def set_time(self, t_days: float) -> None:
        """Drift the programmed planes to ``t_days`` days after programming (from the same programmed state)."""
        if self._states is None or t_days == self.t_drift:
            return
        devices, xp = self.devices, self.xp
        self.t_drift = t_days
        if devices.drift is None:
            return  # nothing depends on the time
        G_pos = devices.at_time(self._states[0], t_days, xp)
        G_neg = None if self._states[1] is None else devices.at_time(self._states[1], t_days, xp)
        self._set_conductances(G_pos, G_neg)

    def _set_conductances(self, G_pos, G_neg) -> None:
        """Install the conductances read at inference time and what depends on them (read noise, fast path)."""
        xp, options, devices, dtype = self.xp, self.opt, self.devices, self.dtype
        self.G_pos, self.G_neg = G_pos, G_neg
        self.sigma_pos = uniform_view(devices.noise_sigma(self.G_pos, xp), xp) if devices is not None else None
        self.sigma_neg = (
            uniform_view(devices.noise_sigma(self.G_neg, xp), xp) if devices is not None and self.G_neg is not None
            else None
        )
        self.noisy = self.sigma_pos is not None and bool(xp.any(self.sigma_pos > 0) or (
            self.sigma_neg is not None and xp.any(self.sigma_neg > 0)))
        self.exact_noise = False
        if self.noisy:
            if options.read_noise_mode == "exact":
                self.exact_noise = True
            elif options.read_noise_mode == "auto" and not devices.output_equivalent_ok:
                self.exact_noise = True
                log_once(f"read noise model {devices.noise.name!r} is not Gaussian-unclipped: "
                         "sampling it per conductance (exact mode), which is slower")
            elif options.read_noise_mode == "auto" and options.Rp > 0:
                self.exact_noise = True
                log_once("read noise with parasitic resistance: sampling it per conductance (exact mode), "
                         "since the circuit is not linear in the conductances")
        # Fast path: one matrix of effective conductances and one of output variances.
        self.separate_planes = options.Rp > 0 or options.Icol_limit > 0 or self.separate_adc
        self._G_eff = self.G_pos if self.G_neg is None else self.G_pos - self.G_neg
        self.var_eff = None
        if self.noisy and not self.exact_noise:
            var = self.sigma_pos**2
            if self.sigma_neg is not None:
                var = var + self.sigma_neg**2
            self.var_eff = uniform_view(var.astype(dtype), xp)
        self._w_codes, self._w_unit, self._w_colsum = self._weight_codes()
        if self._w_codes is not None and self.G_neg is not None:
            self._G_eff = None  # the int8 codes stand for it (a quarter of the memory); rebuilt if a path needs it
        #: var_eff when every column has the same variances (noise independent of G): one column, broadcast,
        #: so the output variance costs a matrix-vector product, not a second matrix-matrix product
        self._var_col = None
        self._var_all = None  # one variance for every cell: output variance = v * sum_i x_i**2
        if self.var_eff is not None and bool(self.xp.all(self.var_eff == self.var_eff[:, :1])):
            self._var_col = self.xp.ascontiguousarray(self.var_eff[:, :1])
            if bool(self.xp.all(self._var_col == self._var_col[0, 0])):
                self._var_all = float(self._var_col[0, 0])

    @property
    def G_eff(self):
        """Effective conductances ``G_pos - G_neg`` (R, C) of the float product (built on first use when the
        int8 weight codes stand for them)."""
        if self._G_eff is None:
            self._G_eff = self.G_pos if self.G_neg is None else self.G_pos - self.G_neg
        return self._G_eff

    def _weight_codes(self):
        """(int8 codes, unit, column sums) with ``G_eff = unit * codes`` to float32 rounding, else Nones.

        Holds for BALANCED planes at their programmed levels (no device error
        moved them) with at most 127 levels, float32, on the CPU, when the
        int32 sums cannot overflow (rows * 255 * 127 < 2**31).
        """
        xp = self.xp
        if (not self.levels or self.G_neg is None or self.has_unit or backend_of(xp).name != "numpy"
                or xp.dtype(self.dtype) != xp.float32 or self.n_rows * 255 * 127 >= 2**31):
            return None, None, None
        unit = (1.0 - self.opt.Gmin) / self.levels
        G = self.G_eff.astype(xp.float64)
        codes = xp.rint(G / unit)
        if float(xp.max(xp.abs(codes), initial=0.0)) > 127:
            return None, None, None
        if float(xp.max(xp.abs(G - codes * unit), initial=0.0)) > 4 * float(xp.finfo(xp.float32).eps):
            return None, None, None
        codes = xp.ascontiguousarray(codes.astype(xp.int8))
        return codes, unit, codes.sum(axis=0, dtype=xp.int32)

    def _set_input_grid(self, unit: float | None, kmin: int = -127, kmax: int = 127) -> None:
        """Declare the inputs integer codes: every ``x`` passed is ``k * unit``, ``k`` an integer in ``[kmin, kmax]``.

        The NeuralCore declares it at construction for a DAC of at most 256 levels. Then, when the
        planes are on their integer levels too, the product ``x @ G_eff`` runs
        exactly in int8 with int32 sums (torch's CPU int8 GEMM,
        :func:`simulator.backend.int8_matmul`; unsigned codes shifted by 128 and
        the shift's column sums added back) and is scaled to float once: the
        exact value the float32 product approximates, several times faster.
        The read noise's ``sum(x**2)`` is then the exact integer ``unit**2 * sum(k**2)``.
        None (or more than 256 codes): the float product.
        """
        self._x_unit, self._x_shift = None, 0
        if unit is None or kmax - kmin > 255:
            return
        self._x_unit = float(unit)
        self._x_shift = input_code_shift(kmin, kmax)

    @property
    def takes_codes(self) -> bool:
        """Whether :meth:`mvm` may be given the int8 input codes themselves (``k - shift``) instead of voltages.

        True while the product runs in int8 (inputs on the declared grid, planes
        on their levels, float32, torch present) on the common path: no
        separate planes, per-conductance noise or input bit slicing. Other
        paths decode codes to voltages first, so codes are never wrong, only slower.
        """
        return (self._x_unit is not None and self._w_codes is not None and not self.needs_bitwise_analog
                and not self.separate_planes and has_int8_matmul())

    def decode_inputs(self, k):
        """Normalized voltages (float32) of int8 input codes ``k`` (stored as ``code - shift``)."""
        xp = self.xp
        x = k.astype(xp.float32)
        if self._x_shift:
            x += xp.float32(self._x_shift)
        x *= xp.float32(self._x_unit)
        return x

    def _codes_of(self, x):
        """The int8 input codes of ``x`` (``code - shift``) when the product can run in int8, else None."""
        xp = self.xp
        if not self.takes_codes:
            return None
        if x.dtype == xp.int8:
            return x
        if x.dtype != xp.float32:
            return None
        k = integer_codes(x, 1.0 / self._x_unit, None, None, xp)
        if self._x_shift:
            k -= self._x_shift
        return k.astype(xp.int8)

    def _product(self, x, k):
        """``x @ G_eff`` (M, C): exact int8 products of the codes ``k`` when given (:meth:`_codes_of`)."""
        xp = self.xp
        if k is not None:
            y = int8_matmul(k, self._w_codes)
            if self._x_shift:
                y += self._x_shift * self._w_colsum
            out = y.astype(xp.float32)
            out *= xp.float32(self._x_unit * self._w_unit)
            return out
        return x @ self.G_eff

    def output_variance(self, x2):
        """Read-noise variance of every column output for squared inputs ``x2`` (M, R): (M, C) or (M, 1)."""
        return x2 @ (self._var_col if self._var_col is not None else self.var_eff)

    def _code_energy(self, k):
        """``sum_i x_i**2`` (M, 1) float32 of int8 codes ``k``: exact in integers, then times ``unit**2``."""
        xp = self.xp
        e = xp.einsum("ij,ij->i", k, k, dtype=xp.int32).astype(xp.float64)
        if self._x_shift:  # codes are k + shift: sum (k+s)**2 = sum k**2 + 2 s sum k + R s**2
            s = float(self._x_shift)
            e += 2 * s * k.sum(axis=1, dtype=xp.int32) + k.shape[1] * s * s
        e *= self._x_unit**2
        return e.astype(xp.float32)[:, None]

    def _add_read_noise(self, I, x, row0: int, tag: str, bit=None, k=None):
        """``I += sqrt(x**2 @ var) * N(0, 1)`` in place (output-equivalent read noise, DESIGN performance rules).

        ``k``: the int8 input codes of ``x`` when the product used them (the sums of squares come from them).
        """
        xp = self.xp
        if self._var_all is not None:  # one pass over x, no (M, R) temporary
            std = self._code_energy(k) if k is not None else xp.einsum("ij,ij->i", x, x)[:, None]
            std *= self._var_all
        else:
            if k is not None:  # the voltages of the codes (whether the caller gave codes or voltages)
                x = self.decode_inputs(k)
            std = self.output_variance(x * x)
        xp.sqrt(std, out=std)
        self.streams.add_normal(I, std, self._key(tag, bit), row0 * I.shape[1])
        return I

    # ------------------------------------------------------------------ shape
    @property
    def n_rows(self) -> int:
        return int(self.G_pos.shape[0])

    @property
    def n_cols(self) -> int:
        return int(self.G_pos.shape[1])

    @property
    def needs_bitwise_analog(self) -> bool:
        """Whether input bits must be simulated one by one even when ADC_per_ibit is False."""
        return self.exact_noise or self.separate_planes

    # ---------------------------------------------------------------- noise
    def _key(self, tag: str, bit) -> tuple:
        return ("read", self.name, tag, -1 if bit is None else int(bit))

    def _normal(self, tag: str, row0: int, shape, dtype, bit=None):
        """N(0, 1) read-noise draws (M, C) for global MVM rows ``row0 .. row0+M-1`` (see the module notes)."""
        M, C = shape
        return self.streams.normal(self._key(tag, bit), row0 * C, M * C, dtype).reshape(M, C)

    def _draws(self, tag: str, row0: int, bit=None):
        """Generator-like keyed draws for a device model's exact sampler, positioned at global MVM row ``row0``."""
        return self.streams.draws(*self._key(tag, bit), row0=row0)

    # ---------------------------------------------------------------- analog
    def _exact_noise_chunk(self, G, sigma, x, row0: int = 0, tag: str = "pos", bit=None):
        """Per-MVM noisy conductances: y_m = x_m @ (G + noise_m)."""
        xp = self.xp
        R, C = G.shape
        per_mvm = R * C * x.dtype.itemsize * 3
        chunk = max(1, int(self.opt.memory_budget // per_mvm))
        out = xp.empty((x.shape[0], C), dtype=x.dtype)
        for s in range(0, x.shape[0], chunk):
            xs = x[s : s + chunk]
            Gb = xp.broadcast_to(G, (xs.shape[0], R, C))
            Sb = xp.broadcast_to(sigma, (xs.shape[0], R, C))
            Gn = self.devices.sample_read(Gb, Sb, xp, self._draws(tag, row0 + s, bit))
            out[s : s + chunk] = xp.einsum("mr,mrc->mc", xs, Gn)
        return out

    def _parasitic(self, x, G, sigma, topology, G_neg=None, sigma_neg=None, row0: int = 0, bit=None):
        """Column currents through the IR-drop circuit solver, chunked over MVMs to the memory budget.

        With ``sigma`` given, read noise is sampled per conductance for every MVM
        (each MVM gets its own noisy array), as the circuit is not linear in G.
        """
        from simulator.circuits.parasitics import parasitic_mvm

        xp = self.xp
        R, C = G.shape[-2:]
        if sigma is not None:
            per_mvm = R * C * x.dtype.itemsize * 24
        else:  # the solver works in cache-sized blocks of MVMs: per MVM it keeps its inputs and outputs
            planes = 1 if G.ndim == 2 else int(G.shape[0])
            per_mvm = (2 * R + 4 * C) * planes * x.dtype.itemsize * 2
        chunk = max(1, int(self.opt.memory_budget // per_mvm))
        kw = dict(Verr_th=self.opt.Verr_th, max_iter=self.opt.max_iter, xp=xp, Rp_row=self.opt.Rp_row,
                  Rp_col=self.opt.Rp_col)
        out = xp.empty(G.shape[:-2] + (x.shape[0], C), dtype=x.dtype)
        for s in range(0, x.shape[0], chunk):
            xs = x[s : s + chunk]
            if sigma is None:
                out[..., s : s + chunk, :] = parasitic_mvm(G, xs, self.opt.Rp, topology, G_neg=G_neg, **kw)
                continue
            m = xs.shape[0]
            Gp = self.devices.sample_read(xp.broadcast_to(G, (m, R, C)), xp.broadcast_to(sigma, (m, R, C)), xp,
                                          self._draws("pos", row0 + s, bit))
            Gn = None
            if G_neg is not None:
                Gn = self.devices.sample_read(xp.broadcast_to(G_neg, (m, R, C)),
                                              xp.broadcast_to(sigma_neg, (m, R, C)), xp,
                                              self._draws("neg", row0 + s, bit))
            out[s : s + chunk] = parasitic_mvm(Gp, xs[:, None, :], self.opt.Rp, topology, G_neg=Gn, **kw)[:, 0, :]
        return out

    def _plane_current(self, G, sigma, x, I=None, row0: int = 0, tag: str = "pos", bit=None):
        """Column currents of one device plane for inputs x (M, R) (``I``: its noiseless parasitic currents)."""
        xp = self.xp
        if I is not None:
            pass
        elif self.opt.Rp > 0:
            I = self._parasitic(x, G, sigma if self.exact_noise else None, self.opt.topology, row0=row0, bit=bit)
        elif self.exact_noise:
            I = self._exact_noise_chunk(G, sigma, x, row0, tag, bit)
        else:
            I = x @ G
        if not self.exact_noise and sigma is not None and self.noisy:
            I = I + xp.sqrt((x * x) @ (sigma * sigma)) * self._normal(tag, row0, I.shape, I.dtype, bit)
        if self.opt.Icol_limit > 0:
            if self.observer is not None:
                self.observer.current_limit(I, self.opt.Icol_limit)
            I = xp.clip(I, -self.opt.Icol_limit, self.opt.Icol_limit)
        return I

    def analog(self, x, row0: int = 0, bit=None):
        """Raw column outputs (M, C) for input voltages x (M, R), read noise included.

        ``row0``: global MVM row of ``x[0]``; ``bit``: the input bit these
        voltages are (bit slicing), which keys its own noise.
        """
        xp = self.xp
        k = self._codes_of(x)
        if k is None and x.dtype == xp.int8:  # codes on a path that needs voltages
            x = self.decode_inputs(x)
        if self._plane is not None:  # one device plane alone (separate ADCs per plane)
            G, sig = (self.G_pos, self.sigma_pos) if self._plane == "pos" else (self.G_neg, self.sigma_neg)
            return self._plane_current(G, sig if self.noisy else None, x, None, row0, self._plane, bit)
        if self.separate_planes:
            if (self.opt.topology == "C") and self.G_neg is not None:
                I = self._parasitic(x, self.G_pos, self.sigma_pos if self.noisy else None, "C",
                                    self.G_neg, self.sigma_neg if self.noisy else None, row0=row0, bit=bit)
                if self.opt.Icol_limit > 0:
                    if self.observer is not None:
                        self.observer.current_limit(I, self.opt.Icol_limit)
                    I = xp.clip(I, -self.opt.Icol_limit, self.opt.Icol_limit)
                return I
            if self.opt.Rp > 0 and self.G_neg is not None and not self.exact_noise:
                # Both planes through the solver in one call (stacked), then each plane's
                # read noise and current limit in the same order as one plane at a time.
                Ipn = self._parasitic(x, xp.stack([self.G_pos, self.G_neg]), None, self.opt.topology)
                I = self._plane_current(self.G_pos, self.sigma_pos if self.noisy else None, x, Ipn[0], row0, "pos", bit)
                return I - self._plane_current(self.G_neg, self.sigma_neg if self.noisy else None, x, Ipn[1],
                                               row0, "neg", bit)
            I = self._plane_current(self.G_pos, self.sigma_pos if self.noisy else None, x, None, row0, "pos", bit)
            if self.G_neg is not None:
                I = I - self._plane_current(self.G_neg, self.sigma_neg if self.noisy else None, x, None, row0, "neg", bit)
            return I
        if self.exact_noise:
            I = self._exact_noise_chunk(self.G_pos, self.sigma_pos, x, row0, "pos", bit)
            if self.G_neg is not None:
                I = I - self._exact_noise_chunk(self.G_neg, self.sigma_neg, x, row0, "neg", bit)
            return I
        I = self._product(x, k)
        if self.var_eff is not None:  # both planes' noise in one draw, from its own stream ("eff")
            self._add_read_noise(I, x, row0, "eff", bit, k)
        return I

    # ------------------------------------------------------------------- MVM
    def bit_planes(self, x, slicing: InputSlicing):
        """Input slices (n_steps, M, R) of integer codes ``x``: digit k of |x| in base ``2**s``, times sign(x).

        ``s = slicing.slice_size`` bits per step (1: bit planes). Digits come
        from integer shifts of |x| (codes are exact integers in x's float type),
        the same values as ``floor(|x| / 2**(s k)) % 2**s``; a digit drives its
        rows at the voltage ``digit / (2**s - 1)`` of full scale.
        """
        xp = self.xp
        M, R = x.shape
        nb, sz = slicing.n_bits, slicing.slice_size
        itype = xp.uint8 if nb <= 8 else xp.uint16 if nb <= 16 else xp.int64
        mag = xp.abs(x).astype(itype)
        planes = xp.empty((slicing.n_steps, M, R), dtype=x.dtype)
        bit = xp.empty((M, R), dtype=itype)
        for k in range(slicing.n_steps):
            xp.right_shift(mag, sz * k, out=bit)
            xp.bitwise_and(bit, 2**sz - 1, out=bit)
            planes[k] = bit
        if sz > 1:
            planes /= 2**sz - 1
        if slicing.signed:
            planes *= xp.sign(x)
        return planes

    def slice_weights(self, slicing: InputSlicing, dtype):
        """Digital weight of each input step's output: ``(2**s - 1) * 2**(s k) / divisor``, shape (n_steps, 1, 1)."""
        sz = slicing.slice_size
        return self.xp.asarray([(2**sz - 1) * 2.0 ** (sz * k) / slicing.divisor for k in range(slicing.n_steps)],
                               dtype=dtype)[:, None, None]

    def mvm(self, x, slicing: InputSlicing, row0: int = 0, scale: float = 1.0):
        """Digitized outputs (M, C) in raw current units, times ``scale``.

        ``row0`` is the global MVM row of ``x[0]`` (it keys the read noise).
        Without input bit slicing ``x`` holds normalized voltages. With it,
        ``x`` holds the integer DAC codes ``x_int`` (|x_int| < 2**n_bits) and the
        result is ``sum_k 2**k * out_k / divisor`` -- digitized per bit when
        ``adc_per_bit``, else accumulated in analog and digitized once.
        ``scale`` (the caller's digital gain) multiplies the digitized result.
        """
        if not slicing.enabled and self.observer is None and not self.needs_bitwise_analog:
            # the common path: ADC and scaling in place on the fresh analog output (no temporaries)
            I = self.analog(x, row0)
            I = self.adc(I, self.xp, out=I)
            if scale != 1.0:
                I *= scale
            return I
        y = self._mvm_general(x, slicing, row0)
        return y * scale  # always a new array: an observer may hold y, callers add into the result

    def _mvm_general(self, x, slicing: InputSlicing, row0: int):
        """:meth:`mvm` (scale 1) for every setting: bit slicing, separate planes or ADCs, exact noise, observers."""
        xp = self.xp
        if self.separate_adc and self._plane is None:
            # subtract_current_in_xbar = false: each device plane has its own ADC; subtract digitally
            try:
                self._plane = "pos"
                y_pos = self.mvm(x, slicing, row0)
                self._plane = "neg"
                y_neg = self.mvm(x, slicing, row0)
            finally:
                self._plane = None
            return y_pos - y_neg
        if not slicing.enabled:
            I = self.analog(x, row0)  # a fresh array: the ADC may overwrite it
            if self.observer is not None:
                self.observer.adc(I, self.adc)
                return self.adc(I, xp)  # keep the observed values intact
            return self.adc(I, xp, out=I)
        scale = 1.0 / slicing.divisor
        if not slicing.adc_per_bit and not self.needs_bitwise_analog:
            # Analog shift-and-add is linear: one MVM on the whole value; read
            # noise adds with weights (2**k / divisor)**2 over the set bits.
            xv = x * scale
            I = xv @ self.G_eff
            if self.var_eff is not None:
                w = xp.zeros_like(x)
                mag = xp.abs(x)
                sz = slicing.slice_size
                for k in range(slicing.n_steps):
                    w += (4.0 ** (sz * k)) * (xp.floor(mag / 2 ** (sz * k)) % 2**sz) ** 2
                I += xp.sqrt(self.output_variance(w * scale * scale)) * self._normal("acc", row0, I.shape, I.dtype)
            if self.observer is not None:
                self.observer.adc(I, self.adc)
            return self.adc(I, xp)
        M, R = x.shape
        planes = self.bit_planes(x, slicing)
        if self.noisy:  # every input bit keys its own read noise
            out = xp.stack([self.analog(planes[k], row0, k) for k in range(slicing.n_steps)])
        else:
            out = self.analog(planes.reshape(slicing.n_steps * M, R)).reshape(slicing.n_steps, M, -1)
        del planes
        weights = self.slice_weights(slicing, x.dtype)
        if slicing.adc_per_bit:
            if self.observer is not None:
                for k in range(slicing.n_steps):
                    self.observer.adc(out[k], self.adc, k)
                return (self.adc(out, xp) * weights).sum(axis=0)  # keep the observed values intact
            q = self.adc(out, xp, out=out)
            q *= weights
            return q.sum(axis=0)
        I = (out * weights).sum(axis=0)
        if self.observer is not None:
            self.observer.adc(I, self.adc)
        return self.adc(I, xp)
