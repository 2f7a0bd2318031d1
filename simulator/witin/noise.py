"""witin_nn 0.1.3's SIMPLE and MBS noise models of the CIM array (``noise_model``, ``noise_level`` L > 0).

Both were traced on witin_nn 0.1.3 (TorchFunctionMode over a layer's
forward: the tensors each ``torch.normal`` call draws and the constants that
scale them); ``scripts/compare_witin_nn.py --noise-models`` compares the
output std with witin_nn's. ``f = L / 4`` in both. NPU units as in
:mod:`simulator.witin.chip`: ``x`` the integer input of the analog product
(for PN the magnitudes, for inputs wider than 8 bits the low 8 bits), ``w``
the integer weights, ``r = steps / N`` the weight of each of the
``N = bias_row_N`` bias rows (driven at 128), ``g = scale_x*scale_weight/scale_y``.

SIMPLE (one draw per call of everything but the input noise)::

    x' = x + e_x * (0.021*|x| + 1) * f           e_x per input element and sample
    w' = w + e_w * (0.035*|w| + 0.57) * f + e_row * 2.85 * f
    r' = r + e_r * (0.035*|r| + 0.57) * 2.6 * f   per bias row and output
    NPU_y = clip(round((x' (*) w' + 128 * sum_rows r') / g + e_y * f))

``e_row`` is one draw per row of witin's weight tensor: per input of a
WitinLinear (and of a ``to_linear`` convolution, whose inputs are the
unfolded patches, so its input noise is drawn per patch element), per output
channel of a WitinConv2d, per input channel of a WitinConvTranspose2d. PN
layers: WitinLinear perturbs its stacked array ``[W; -W]`` (inputs
``[x+; x-]``) once; PN convolutions run two passes, each with its own input,
weight, row and output noise, the bias rows in the first only.

witin_nn 0.1.3 keeps the row and output factors (``2.85 f``, ``f``) as
state of the layer and multiplies them by ``f`` again after every pass, so
pass k of a fresh layer uses ``2.85 f**k`` and ``f**k`` (k = 1, 2, ...):
over a model's lifetime they vanish (f < 1) or explode (f > 1). xbarsim
draws what a fresh layer's first call draws, at every call: ``f`` for
one-pass products, ``f`` and ``f**2`` for the two passes of PN convolutions.

MBS (WitinLinear and ``to_linear`` convolutions only; witin_nn raises for
other convolutions, and so does the importer), drawn per sample: cell ``(i, j)``
adds ``128 * f * e`` to the accumulator with

    std = 0.4 * (k(x_i) * |w_ij| + c)    where x_i != 0 and w_ij != 0, else 0.2
    k(x) = -3.68230927565097e-06 x**2 + 7.537353873862695e-04 x + 8.216858698019623e-03   (x < 128)
    k(x) =  1.0487785265048651e-05 x**2 - 3.09263547936803e-03 x + 0.2826961812466628     (x >= 128)
    c = 1.0066457801678648

the bias rows ``std = 1.95 * (k(128) * |r| + c)`` (0.6 where ``r = 0``),
drawn once per call, and the output ``e_y * 0.9 * f`` per sample. The cell
noise is independent per sample and output, so it is drawn as one normal
per output with the summed variance.
"""
from __future__ import annotations

from simulator import ops
from simulator.witin import quant

#: SIMPLE: input-noise std ``(a*|x| + b) * f``, weight-noise std ``(a*|w| + b) * f``, row and bias-row factors
SIMPLE_X = (0.021, 1.0)
SIMPLE_W = (0.035, 0.57)
SIMPLE_ROW = 2.85
SIMPLE_BIAS = 2.6

#: MBS: k(x) polynomials (x < 128, x >= 128), constant c, cell / zero-cell / bias / zero-bias / output stds
MBS_LOW = (-3.68230927565097e-06, 0.0007537353873862695, 0.008216858698019623)
MBS_HIGH = (1.0487785265048651e-05, -0.00309263547936803, 0.2826961812466628)
MBS_C = 1.0066457801678648
MBS_CELL, MBS_ZERO, MBS_BIAS, MBS_BIAS_ZERO, MBS_OUT = 0.4, 0.2, 1.95, 0.6, 0.9


def _poly(c, x):
    return c[0] * x * x + c[1] * x + c[2]


def mbs_k(x, xp):
    """MBS cell-noise slope ``k(x)`` for integer inputs ``x >= 0``."""
    return xp.where(x < 128, _poly(MBS_LOW, x), _poly(MBS_HIGH, x))


def _dense(op, nx, nw, xp):
    """``(inputs, matrix, out_shape)`` of a product as one matrix product (to_linear: the unfolded patches)."""
    if not hasattr(op, "k"):
        return nx, nw, None
    (kh, kw), (sh, sw), (dh, dw) = op.k, op.s, op.d
    cols, (Ho, Wo) = ops.im2col(xp.ascontiguousarray(nx), kh, kw, sh, sw, dh, dw, xp)
    return cols, nw.reshape(-1, nw.shape[-1]), (nx.shape[0], Ho, Wo, nw.shape[-1])


class ArrayNoise:
    """SIMPLE / MBS accumulators of one :class:`~simulator.witin.chip._Product` (its ``_analog``)."""

    def __init__(self, product):
        self.p = product
        s = product.spec
        self.f = s.noise_level / 4.0
        # one NPU_y step in accumulator units: witin divides the accumulator by sx*sw*G_algo, then * sy
        self.g = quant.g_value(s.scale_x, s.scale_weight, s.scale_y) * s.g_algo
        self.simple = s.noise_model == "SIMPLE"

    def _normal(self, shape):
        return self.p.xp.asarray(self.p.rng.standard_normal(shape))

    def __call__(self, nx):
        """Noisy accumulator(s) of the analog product of ``nx`` (a pair for PN convolutions)."""
        p, xp = self.p, self.p.xp
        pos, neg = xp.maximum(nx, 0.0), xp.maximum(-nx, 0.0)
        if p.pn_negated is not None:  # PN convolution: two passes, the bias rows in the first
            return self._conv(pos, p.nw, True, 1), self._conv(neg, p.pn_negated, False, 2)
        if hasattr(p.op, "k") and not p.spec.to_linear:
            return self._conv(nx, p.nw, True)
        if p.spec.input_mode == "pn":  # WitinLinear PN: one stacked array [W; -W] with inputs [x+; x-]
            cols, mat, shape = _dense(p.op, pos, p.nw, xp)
            cols = xp.concatenate([cols, _dense(p.op, neg, p.nw, xp)[0]], axis=-1)
            mat = xp.concatenate([mat, -mat], axis=0)
        else:
            cols, mat, shape = _dense(p.op, nx, p.nw, xp)
        acc = self._linear(cols, mat)
        return self._finish(acc if shape is None else acc.reshape(shape))

    def _finish(self, acc, with_bias: bool = True, fk: float | None = None):
        """Bias rows (with their noise) and the output noise (``fk`` or ``0.9 f`` NPU_y steps)."""
        if with_bias:
            acc = acc + self._bias_rows()
        out_std = (self.f if fk is None else fk) if self.simple else self.f * MBS_OUT
        return acc + self._normal(acc.shape) * (out_std * self.g)

    def _conv(self, nx, nw, with_bias: bool, k: int = 1):
        """SIMPLE on a convolution: one row draw per leading channel of witin's weight (our last kernel axis).

        ``k``: the pass of the call (PN convolutions run two); witin_nn's row- and output-noise factor is ``f**k``
        there (it compounds at every pass of a layer, see the module docstring).
        """
        p, xp, f = self.p, self.p.xp, self.f
        (ax, bx), (aw, bw) = SIMPLE_X, SIMPLE_W
        xn = nx + self._normal(nx.shape) * ((ax * xp.abs(nx) + bx) * f)
        rows = (1,) * (nw.ndim - 1) + (nw.shape[-1],)
        wn = nw + self._normal(nw.shape) * ((aw * xp.abs(nw) + bw) * f) + self._normal(rows) * (SIMPLE_ROW * f**k)
        return self._finish(p.op(xn, wn), with_bias, f**k)

    def _linear(self, cols, mat):
        """SIMPLE or MBS on a matrix product ``cols @ mat`` (inputs on the last axis of ``cols``)."""
        xp, f = self.p.xp, self.f
        if self.simple:
            (ax, bx), (aw, bw) = SIMPLE_X, SIMPLE_W
            xn = cols + self._normal(cols.shape) * ((ax * xp.abs(cols) + bx) * f)
            rows = mat.shape[:-1] + (1,)
            wn = mat + self._normal(mat.shape) * ((aw * xp.abs(mat) + bw) * f) + self._normal(rows) * (SIMPLE_ROW * f)
            return xn @ wn
        nzx = (cols != 0).astype(xp.float64)
        k1 = mbs_k(cols, xp) * nzx
        nzw = (mat != 0).astype(xp.float64)
        both = nzx @ nzw
        var = (MBS_CELL**2) * ((k1 * k1) @ (mat * mat) + 2 * MBS_C * (k1 @ xp.abs(mat)) + MBS_C**2 * both)
        var = var + MBS_ZERO**2 * (mat.shape[0] - both)
        return cols @ mat + xp.sqrt(var) * self._normal(var.shape) * (quant.BIAS_ROW_INPUT * f)

    def _bias_rows(self):
        """Bias-row accumulator with one noise draw per call (``analog_steps`` spread over N rows)."""
        p, xp, f = self.p, self.p.xp, self.f
        N = p.spec.bias_row_N
        r = p.analog_steps / N
        if self.simple:
            noisy = r + self._normal((N,) + r.shape) * ((SIMPLE_W[0] * xp.abs(r) + SIMPLE_W[1]) * SIMPLE_BIAS * f)
            return quant.BIAS_ROW_INPUT * noisy.sum(axis=0)
        std = xp.where(r == 0, MBS_BIAS_ZERO, MBS_BIAS * (float(mbs_k(xp.asarray(128.0), xp)) * xp.abs(r) + MBS_C))
        return quant.BIAS_ROW_INPUT * (p.analog_steps + xp.sqrt(float(N)) * std * f * self._normal(r.shape))
