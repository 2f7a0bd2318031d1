"""``hardware = VPU`` convolutions of witin_nn 0.1.3 (WitinConv2d / WitinConvTranspose2d).

Traced on witin_nn 0.1.3 (TorchFunctionMode over its forward) and fuzzed
against it (``scripts/compare_witin_nn.py --fields``): with
``HardwareType.VPU`` a convolution runs on the digital vector unit instead
of the CIM array, in one pass::

    NPU_x = clip(round(x * scale_x), -2**(xb-1), 2**(xb-1)-1)      signed, float32
    NPU_w = clip(round(w * scale_weight), -2**(wb-1), 2**(wb-1)-1)
    NPU_b = round((b * scale_x) * scale_weight)                    no 128-steps, no clip
    NPU_y = clip(round((NPU_x (*) NPU_w + NPU_b) / g), -2**(yb-1), 2**(yb-1)-1)
    y     = NPU_y / scale_y          g = (scale_x * scale_weight) / scale_y, float32

The input scale is the signed one (``2**(xb-1) / 2**ceil(log2 io_max_x)``)
for both convolution types; ``handle_neg_in``, ``shift_num``,
``bias_row_N``, ``bias_d``, ``output_fp_clip`` and the noise fields play no
part (witin_nn draws no noise there), nor does ``G_algo`` (measured: G_algo = 0.5 / 2 / 3 leave the VPU
output unchanged; float mode divides by it, see chip.py). WitinLinear and ``to_linear``
convolutions ignore ``hardware`` (their trace is the ARRAY one).
"""
from __future__ import annotations

from simulator.witin import quant


class VPUProduct:
    """The integer pipeline of one VPU convolution (``op`` pads/convolves like the array product)."""

    def __init__(self, spec, op, kernel, bias, n_out: int, xp):
        self.spec, self.op, self.xp = spec, op, xp
        f32 = xp.float32
        self.nw = quant.quantize_weight(xp.asarray(kernel), spec.scale_weight, spec.wb, xp, spec.w_clip)
        b = xp.zeros(n_out, dtype=f32) if bias is None else xp.asarray(bias, dtype=f32).reshape(-1)
        self.nb = xp.round((b * f32(spec.scale_x)) * f32(spec.scale_weight)).astype(xp.float64)
        self.g = (f32(spec.scale_x) * f32(spec.scale_weight)) / f32(spec.scale_y)

    def npu(self, x):
        """NPU_y (integer valued, float64) for input ``x`` in the layer's float units."""
        xp, s = self.xp, self.spec
        if hasattr(self.op, "pad_input"):
            x = self.op.pad_input(xp.asarray(x))
        nx = quant.quantize_input(x, s.scale_x, s.xb, "FALSE", xp, mode="signed")
        acc = self.op(nx, self.nw) + self.nb
        half = 2.0 ** (s.yb - 1)
        return xp.clip(xp.round(xp.asarray(acc, dtype=xp.float32) / self.g), -half, half - 1).astype(xp.float64)

    def __call__(self, x):
        return self.npu(x) / self.spec.scale_y
