"""A witin CIM layer mapped onto the general core hierarchy (``witin_mode = "arrays"``).

The layer's int8 weights ``NPU_w`` (witin's weight quantization) become the
conductance matrix -- BALANCED or OFFSET, with whatever device errors, drift,
read noise, bit slicing and parasitics the config adds. witin's input
quantization is the DAC and its output quantization is the ADC, in the
layer's own (algorithmic) units:

* DAC: ``x_quant_bits`` bits with step ``1/scale_x`` over ``[0, (2**xb - 1)/scale_x]``
  (``handle_neg_in = "FALSE"``), or a signed range with one more bit (PN / Shift:
  positive and negative inputs on the same rows);
* weights: ``NPU_w / (scale_weight*G_algo)`` as 8-bit weights with ``W_max`` fixed to
  ``127 / (scale_weight*G_algo)`` (BALANCED) or ``128 / (...)`` (OFFSET), so the
  int8 levels are the arrays' levels exactly and ``Nslices`` can slice them;
* bias: ``NPU_b = 128 * steps`` realized on ``bias_row_N`` extra rows driven at
  ``128 / scale_x`` whose weights split ``steps`` evenly (each within int8);
* output: ``y_quant_bits`` bits with step ``1/scale_y`` (``round(acc / g_value)``),
  ``2**yb - 1`` zero-centred levels ``+-(2**(yb-1) - 1) / scale_y``. With
  BALANCED arrays this is the ADC (it digitizes ``w . x`` directly); with
  OFFSET arrays the ADC sees the offset current, so the config's ADC digitizes
  the columns and witin's output quantization follows the digital offset
  subtraction.

Simplifications against the chip path (``witin_mode = "chip"``): all input bits
go through the array (no digital high bits above 8 bits), the ADC has one
level fewer at the negative end, and witin's NORMAL noise model is replaced by
the config's device models.
"""
from __future__ import annotations

import numpy as np

from simulator import ops
from simulator.quantization.uniform import UniformQuantizer
from simulator.witin import quant
from simulator.witin.chip import WitinChipLayer


def _split_steps(steps: np.ndarray, n_rows: int) -> np.ndarray:
    """(n_rows, C) integer row weights summing to ``steps`` per column, as even as possible."""
    q, r = np.divmod(steps.astype(np.int64), n_rows)
    rows = np.repeat(q[None, :], n_rows, axis=0)
    rows[np.arange(n_rows)[:, None] < r[None, :]] += 1
    return rows.astype(np.float64)


def product_matrix(layer_type: str, config: dict, nw: np.ndarray) -> np.ndarray:
    """MVM matrix (rows = inputs) of quantized kernel ``nw`` in the executor's im2col order."""
    if layer_type in ("Dense", "GRUCell"):
        return nw
    if layer_type == "Conv2D":
        return ops.conv_matrix(nw, int(config.get("groups", 1)), np)
    k = nw[::-1, ::-1].transpose(0, 1, 3, 2)  # Conv2DTranspose (kh, kw, cout, cin) -> flipped (kh, kw, cin, cout)
    return k.reshape(-1, k.shape[-1])


def witin_array_products(layer, hw, xp, rng):
    """[(suffix, W, constant_inputs, hw_override, W_max, output_quantizer)] for one layer.

    ``W`` (rows, cols) is in algorithmic units, ``constant_inputs`` drive its
    last rows (bias rows), ``output_quantizer`` is applied after the MVM when
    the ADC cannot play witin's output quantization (OFFSET, sliced weights).
    """
    chip = WitinChipLayer(layer, hw, np, np.random.default_rng(0))
    products = [("/ih", chip.ih), ("/hh", chip.hh)] if layer.type == "GRUCell" else [("", chip.product)]
    out = []
    for suffix, prod in products:
        s = prod.spec
        nw = np.asarray(prod.nw, dtype=np.float64)
        sw = s.scale_weight * s.g_algo  # witin divides every accumulator by scale_x*scale_weight*G_algo
        W = product_matrix(layer.type, layer.config, nw) / sw
        steps = np.asarray(prod.analog_steps, dtype=np.float64).reshape(-1)
        if prod.digital_steps is not None:
            steps = steps + np.asarray(prod.digital_steps, dtype=np.float64).reshape(-1)
        const = np.zeros(0)
        if np.any(steps != 0):
            rows = _split_steps(np.rint(steps), s.bias_row_N) / sw
            W = np.concatenate([W, rows], axis=0)
            const = np.full(s.bias_row_N, quant.BIAS_ROW_INPUT / s.scale_x)
        xmax = (2**s.xb - 1) / s.scale_x
        signed = s.handle_neg_in != "FALSE"
        ymax = (2 ** (s.yb - 1) - 1) / s.scale_y
        override = {
            "weight_bits": 8, "weight_quantizer": "uniform", "digital_bias": True,
            "dac_bits": s.xb + 1 if signed else s.xb, "dac_range": (-xmax if signed else 0.0, xmax),
        }
        out_q = UniformQuantizer(s.yb, -ymax, ymax)
        if hw.style == "BALANCED" and hw.Nslices == 1:
            override.update(adc_bits=s.yb, adc_range_option="calibrated", adc_range=(-ymax, ymax), adc_exponents=None)
            out_q = None  # the ADC is the output quantizer
        wmax = (127.0 if hw.style == "BALANCED" else 128.0) / sw
        out.append((suffix, W, const, override, wmax, out_q))
    return out


class WithConstantInputs:
    """An MVM callable whose last rows are driven by constant inputs (witin's bias rows),
    optionally followed by witin's output quantization."""

    def __init__(self, core, const, xp, output_quantizer=None):
        self.core, self.xp, self.output_quantizer = core, xp, output_quantizer
        self.const = xp.asarray(const)

    def __call__(self, X, row0: int | None = None):
        xp = self.xp
        if self.const.size:
            c = xp.broadcast_to(self.const.astype(X.dtype), (X.shape[0], self.const.size))
            X = xp.concatenate([X, c], axis=1)
        y = self.core(X, row0=row0)
        return y if self.output_quantizer is None else self.output_quantizer(y, xp)
