"""Building the analog cores of a network's MVM layers.

:class:`CoreFactory` turns one MVM layer into what the executor calls for it:

* a :class:`~simulator.cores.neural.NeuralCore` for its MVM matrix (rows =
  inputs; a convolution's im2col matrix ``(kh*kw*cin, cout)``, a transposed
  convolution's flipped kernel), with the layer's array options, input (DAC)
  range, calibrated ADC range, device stack and non-uniform weight levels;
* a tuple ``(ih, hh)`` of two for a GRU cell;
* a :class:`~simulator.cores.grouped.GroupedCore` (one NeuralCore per group)
  for ``grouped_conv = "per_group"``;
* a :class:`~simulator.witin.chip.WitinChipLayer` (``witin_mode = "chip"``) or
  NeuralCores with constant inputs (``"arrays"``) for witin CIM layers;
* an exact digital MVM ``X @ W + b`` for layers with ``analog = false``.

Every core draws its programming errors from the simulation's keyed random
streams (by core, partition, slice and polarity), so the order of building
does not change the numbers.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from devices.stack import make_device_stack
from simulator import ops
from simulator.circuits.parasitics import check_topology
from simulator.config import Config, wire_resistances
from simulator.cores.grouped import GroupedCore, group_blocks
from simulator.cores.mapping import lloyd_encoder, weight_range
from simulator.cores.neural import NeuralCore
from simulator.cores.numeric import ArrayOptions
from simulator.errors import ConfigError
from simulator.network import Layer
from simulator.witin.arrays import WithConstantInputs, witin_array_products
from simulator.witin.chip import WitinChipLayer


def resolve_dtype(cfg: Config, xp):
    """Arithmetic of the analog path: ``precision``, or for "auto" float32 when every ADC has 1..16 bits."""
    if cfg.precision != "auto":
        return xp.dtype(cfg.precision)
    bits = [cfg.adc_bits] + [o.adc_bits for o in cfg.layers.values() if o.adc_bits is not None]
    return xp.dtype("float32" if all(0 < b <= 16 for b in bits) else "float64")


def weight_structure(layer: Layer):
    """Mask of the MVM-matrix entries that are real weights (None: all are), for block-diagonal layers."""
    if layer.type == "DepthwiseConv2D":
        return ops.depthwise_matrix(np.ones_like(layer.weights["depthwise_kernel"]), np) != 0
    groups = int(layer.config.get("groups", 1))
    if layer.type == "Conv2D" and groups > 1:
        return ops.conv_matrix(np.ones_like(layer.weights["kernel"]), groups, np) != 0
    return None


def mvm_matrix(layer: Layer):
    """``(W, b)`` of an MVM layer other than a GRU cell: W with rows = inputs (im2col order), b or None."""
    w, t = layer.weights, layer.type
    if t == "Dense":
        W = w["kernel"]
    elif t == "Conv2D":
        W = ops.conv_matrix(np.asarray(w["kernel"]), int(layer.config.get("groups", 1)), np)
    elif t == "DepthwiseConv2D":
        W = ops.depthwise_matrix(np.asarray(w["depthwise_kernel"]), np)
    elif t == "Conv2DTranspose":
        k = ops.transpose_kernel_as_conv(np.asarray(w["kernel"]))  # (kh, kw, cout, cin) -> flipped (kh, kw, cin, cout)
        W = k.reshape(-1, k.shape[-1])
    else:  # pragma: no cover - MVM_LAYER_TYPES and this list agree
        raise ConfigError(f"no analog mapping for layer type {t}")
    return W, (w.get("bias") if layer.config.get("use_bias", True) else None)


def array_options(cfg: Config, hw) -> ArrayOptions:
    """The per-array settings of a layer with hardware parameters ``hw``: G_min, wires, current limit, noise mode."""
    rp_row, rp_col = wire_resistances(hw)
    if hw.noRowParasitics:
        rp_row = 0.0
    Rp = max(rp_row, rp_col)
    topology = None
    if Rp > 0:
        topology = check_topology(Rp, hw.noRowParasitics, hw.style, hw.interleaved_posneg, hw.input_bitslicing)
    return ArrayOptions(
        Gmin=0.0 if cfg.On_off_ratio == 0 else 1.0 / cfg.On_off_ratio,
        read_noise_mode=cfg.read_noise_mode, Rp=Rp, topology=topology, Verr_th=cfg.Verr_th,
        max_iter=cfg.parasitics_max_iter,
        Icol_limit=hw.Icol_max / hw.Icell_max if hw.Icol_max > 0 else 0.0,
        memory_budget=cfg.memory_budget_mb * 1e6,
        Rp_row=rp_row, Rp_col=rp_col, subtract_in_xbar=hw.subtract_current_in_xbar or hw.style != "BALANCED",
    )


class CoreFactory:
    """Builds the cores of one programmed chip (one config, one seed).

    ``rng``: the simulation's keyed random streams; ``dtype``: arithmetic of
    the analog path; ``calibration``: what :func:`simulator.calibration_io.calibration_for` returned
    (ADC ranges by core name under ``"adc"``, input ranges by core or layer
    name under ``"dac"``), or None.
    """

    def __init__(self, cfg: Config, xp, rng, dtype, calibration: dict | None) -> None:
        self.config, self.xp, self.rng, self.dtype, self.calibration = cfg, xp, rng, dtype, calibration
        #: device stacks of the layers (layers with equal device settings share one), see make_device_stack
        self.device_stacks: dict = {}
        #: the chip-wide device stack (the config's defaults)
        self.devices = make_device_stack(cfg, cfg, self.device_stacks)
        #: every NeuralCore built so far, in building order
        self.analog_cores: list[NeuralCore] = []

    def input_range(self, layer: Layer, hw, name: str | None = None) -> tuple[float, float] | None:
        """DAC range of a core: ``dac_range``, else a calibrated range (the core's own, then the layer's),
        else the range the model recorded (``input_range``); None when none is known."""
        if hw.dac_range is not None:
            return tuple(hw.dac_range)
        dac = self.calibration.get("dac", {}) if self.calibration is not None else {}
        for key in (name, layer.name):  # a core's own range (GRU "<layer>/ih"), else the layer's
            if key is not None and key in dac:
                return tuple(dac[key])
        if "input_range" in layer.attrs:
            return tuple(layer.attrs["input_range"])
        return None

    def make_core(self, name: str, W, bias, layer: Layer, hw, wmax: float | None = None) -> Callable:
        """A NeuralCore for matrix W (rows = inputs), or an exact digital MVM when the layer is not analog."""
        xp = self.xp
        if not hw.analog:
            Wd = xp.asarray(W, dtype=self.dtype)
            bd = None if bias is None else xp.asarray(bias, dtype=self.dtype)
            return lambda X, row0=None: X @ Wd + bd if bd is not None else X @ Wd
        calib = None
        if self.calibration is not None:
            calib = self.calibration.get("adc", {}).get(name)
        lloyd = None
        if hw.weight_quantizer == "lloyd":
            lloyd = lloyd_encoder(hw, self.config, xp, name, structure=weight_structure(layer))
        core = NeuralCore(
            name, W, bias, hw, options=array_options(self.config, hw),
            devices=make_device_stack(self.config, hw, self.device_stacks), xp=xp, rng=self.rng, dtype=self.dtype,
            input_range=self.input_range(layer, hw, name), adc_calibration=calib, lloyd=lloyd, wmax=wmax,
        )
        self.analog_cores.append(core)
        return core

    def build(self, layer: Layer) -> Any:
        """What the executor calls for MVM layer ``layer`` (see the module notes)."""
        cfg = self.config
        hw = cfg.for_layer(layer.name)
        w = layer.weights
        witin = layer.attrs.get("witin")
        if (witin or {}).get("padding_mode", "zeros") != "zeros" and cfg.witin_mode != "chip":
            raise ConfigError(f"layer {layer.name!r}: padding_mode {witin['padding_mode']!r} is "
                              "simulated in witin_mode = 'chip' only")
        if witin and cfg.witin_mode == "chip":
            return WitinChipLayer(layer, hw, self.xp, self.rng)
        if witin and cfg.witin_mode == "arrays":
            return self._witin_arrays(layer, hw)
        if layer.type == "GRUCell":
            return (self.make_core(layer.name + "/ih", w["weight_ih"], w.get("bias_ih"), layer, hw),
                    self.make_core(layer.name + "/hh", w["weight_hh"], w.get("bias_hh"), layer, hw))
        grouped = layer.type == "DepthwiseConv2D" or (layer.type == "Conv2D" and int(layer.config.get("groups", 1)) > 1)
        if grouped and hw.grouped_conv == "per_group":
            return self._grouped_core(layer, hw, w.get("bias") if layer.config.get("use_bias", True) else None)
        W, b = mvm_matrix(layer)
        return self.make_core(layer.name, W, b, layer, hw)

    def _witin_arrays(self, layer: Layer, hw):
        """``witin_mode = "arrays"``: the chip's int8 products on NeuralCores, with their constant inputs."""
        cores = []
        for suffix, W, const, override, wmax, out_q in witin_array_products(layer, hw, self.xp, self.rng):
            core = self.make_core(layer.name + suffix, W, None, layer, hw.model_copy(update=override), wmax=wmax)
            cores.append(WithConstantInputs(core, const, self.xp, out_q))
        return tuple(cores) if layer.type == "GRUCell" else cores[0]

    def _grouped_core(self, layer: Layer, hw, bias) -> GroupedCore:
        """``grouped_conv = "per_group"``: one NeuralCore per group, sharing the layer's W_max and DAC."""
        if hw.adc_range_option == "calibrated":
            raise ConfigError(f"{self.config.source}: layer {layer.name!r}: grouped_conv = 'per_group' does not take "
                              "calibrated ADC ranges yet; use adc_range_option 'max' or 'granular', or grouped_conv = "
                              "'block_diagonal'")
        depthwise = layer.type == "DepthwiseConv2D"
        kernel = np.asarray(layer.weights["depthwise_kernel" if depthwise else "kernel"], dtype=np.float64)
        blocks = group_blocks(kernel, int(layer.config.get("groups", 1)), depthwise)
        wmax = weight_range(kernel, hw.weight_percentile, np)
        cores, cols, outs = [], [], []
        for g, (c, o, W) in enumerate(blocks):
            b = None if bias is None else np.asarray(bias)[o]
            cores.append(self.make_core(f"{layer.name}/g{g}", W, b, layer, hw, wmax=wmax))
            cols.append(c)
            outs.append(o)
        return GroupedCore(layer.name, cores, cols, outs, sum(len(o) for o in outs), self.xp)
