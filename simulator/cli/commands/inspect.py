"""``xbarsim inspect MODEL [CONFIG] [--weights]``: layers, shapes, MVM sizes and array counts."""
from __future__ import annotations

import click
import numpy as np

from simulator.cli.options import no_check_option
from simulator.cores.mapping import partition_sizes, weight_range


def mvm_matrices(layer) -> list[tuple[str, tuple[int, int]]]:
    """(core name, (rows, cols)) of every MVM matrix of a layer, rows = inputs."""
    w = layer.weights
    t = layer.type
    if t == "Dense":
        return [(layer.name, tuple(w["kernel"].shape))]
    if t == "Conv2D":
        kh, kw, cin_g, cout = w["kernel"].shape
        return [(layer.name, (kh * kw * cin_g * int(layer.config.get("groups", 1)), cout))]
    if t == "DepthwiseConv2D":
        kh, kw, cin, mult = w["depthwise_kernel"].shape
        return [(layer.name, (kh * kw * cin, cin * mult))]
    if t == "Conv2DTranspose":
        kh, kw, cout, cin = w["kernel"].shape
        return [(layer.name, (kh * kw * cin, cout))]
    if t == "GRUCell":
        return [(layer.name + "/ih", tuple(w["weight_ih"].shape)), (layer.name + "/hh", tuple(w["weight_hh"].shape))]
    return []


def array_count(rows: int, has_bias: bool, hw, cols: int | None = None) -> tuple[int, int, int, int]:
    """(partitions, slices, polarity, total arrays) for one matrix, as manual 1.2.1 counts cores.

    Partitions are row partitions (NrowsMax) times column partitions (NcolsMax, when ``cols`` is given).
    """
    n_rows = rows + (1 if has_bias and not hw.digital_bias else 0)
    parts = len(partition_sizes(n_rows, hw.NrowsMax))
    if cols is not None:
        parts *= len(partition_sizes(cols, getattr(hw, "NcolsMax", 0)))
    slices = hw.Nslices
    polarity = 2 if hw.style == "BALANCED" else 1
    return parts, slices, polarity, parts * slices * polarity


def weight_report(W: np.ndarray, hw) -> str:
    from simulator.quantization import lloyd_max, quantize_uniform

    w = np.clip(W / weight_range(W, hw.weight_percentile, np), -1, 1).ravel()
    if hw.weight_quantizer == "lloyd":
        n = hw.weight_levels
    elif hw.weight_bits > 0:
        n = 2**hw.weight_bits - 1 if hw.style == "BALANCED" else 2**hw.weight_bits
    else:
        return "      (weight_bits = 0: unquantized)"
    wu, _ = quantize_uniform(w, n, 1.0)
    mse_u = float(np.mean((wu - w) ** 2))
    try:
        res = lloyd_max(w, n, tol=hw.lloyd_tol, allow_degenerate=True)
        mse_l = res.mse
        levels = res.levels
    except Exception as exc:  # pragma: no cover - reported, not fatal
        return f"      Lloyd failed: {exc}"
    shown = ", ".join(f"{v:+.3f}" for v in levels) if len(levels) <= 16 else f"{len(levels)} levels in [{levels[0]:+.3f}, {levels[-1]:+.3f}]"
    return (f"      {n} levels (normalized weights): uniform MSE {mse_u:.3e}, Lloyd MSE {mse_l:.3e} "
            f"({mse_l / mse_u if mse_u else float('nan'):.2f}x)\n      Lloyd levels: {shown}")


def _has_bias(layer) -> bool:
    return bool(layer.config.get("use_bias", True)) and ("bias" in layer.weights or "bias_ih" in layer.weights)


def _arrays_line(core: str, rows: int, has_bias: bool, hw, cols: int | None = None) -> tuple[str, int]:
    """One core's array count line for ``inspect`` and the number of arrays."""
    parts, slices, pol, n = array_count(rows, has_bias, hw, cols)
    return (f"      {core}: {parts} partition(s) x {slices} slice(s) x {pol} polarity = {n} arrays"
            + (" (+ unit column)" if hw.style == "OFFSET" and not hw.digital_offset else "")), n


def torch_report(net, cfg=None) -> str:
    """A torch model: its analog layers (qualified names, MVM shapes, arrays) and what stays digital in torch."""
    lines = [f"torch model {net.name} ({net.metadata.get('source', 'torch')}): input {list(net.input_shape)}; "
             f"{len(net.sites)} analog module(s); every other operation runs in torch"]
    lines.append(f"{'analog layer':<34} {'module':<20} {'in -> out':<30} MVM (rows x cols)")
    total = 0
    for site in net.sites:
        io = f"{list(site.input_shape[1:])} -> {list(site.output_shape[1:])}"
        calls = f" ({site.calls} calls per forward)" if site.calls > 1 else ""
        for layer in site.layers:
            mats = mvm_matrices(layer)
            lines.append(f"{layer.name:<34} {site.module_class:<20} {io:<30} "
                         + ", ".join(f"{r}x{c}" for _, (r, c) in mats) + calls)
            if cfg is None:
                continue
            hw = cfg.for_layer(layer.name)
            if not hw.analog:
                lines.append("      digital (analog = false)")
                continue
            for core, (r, c) in mats:
                text, n = _arrays_line(core, r, _has_bias(layer), hw, c)
                total += n
                lines.append(text)
    if net.folds and (cfg is None or cfg.fold_batchnorm):
        lines.append("batch norms folded into their MVM layer: "
                     + ", ".join(f"{bn} -> {src}" for bn, src in net.folds.items()))
    if net.unused:
        lines.append("never called by the forward pass (not simulated): " + ", ".join(net.unused))
    kinds: dict[str, list[str]] = {}
    folded = set(net.folds) if cfg is None or cfg.fold_batchnorm else set()
    for qual, cls in net.digital:
        if qual not in folded:
            kinds.setdefault(cls, []).append(qual)
    digital = "; ".join(f"{cls} x{len(q)}" for cls, q in sorted(kinds.items()))
    lines.append(f"digital in torch: {digital or 'no leaf modules'}; plus the functional operations between modules "
                 "(additions, reshapes, attention products between activations)")
    if cfg is not None:
        lines.append(f"arrays {total}")
    return "\n".join(lines)


@click.command("inspect")
@click.argument("model")
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option("--weights", is_flag=True, help="Per layer: quantization levels and MSE, uniform vs Lloyd.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a config key (repeatable).")
@no_check_option
def command(model: str, config: str | None, weights: bool, sets: tuple[str, ...], no_check: bool) -> None:
    """Print MODEL's layers, shapes, MVM sizes and, with CONFIG, the arrays each layer needs."""
    from simulator.cli.commands.run import load_with_overrides
    from simulator.model_files import load_model
    from simulator.simulation import Simulation

    net = load_model(model, check=not no_check)
    cfg = load_with_overrides(config, sets) if (config or sets) else None
    if getattr(net, "is_torch", False):
        click.echo(torch_report(net, cfg))
        return
    shapes = Simulation(net, {"fold_batchnorm": False}, seed=0).output_shapes()
    layout = "NHWC" if net.internal_layout == "NHWC" else f"{net.input_layout}, as the model's own"
    click.echo(f"model {net.name}: input {net.input_layout} {list(net.input_shape)} (shapes below are {layout})")
    if net.metadata.get("self_check"):
        click.echo(f"  {net.metadata['self_check']}")
    click.echo(f"{'layer':<24} {'type':<22} {'output':<16} {'params':>9}  MVM (rows x cols)")
    total_params = 0
    total_arrays = 0
    for layer in net.layers:
        params = int(sum(np.asarray(v).size for v in layer.weights.values()))
        total_params += params
        mats = mvm_matrices(layer)
        mv = ", ".join(f"{r}x{c}" for _, (r, c) in mats)
        click.echo(f"{layer.name:<24} {layer.type:<22} {str(list(shapes.get(layer.name, ()))):<16} {params:>9}  {mv}")
        if cfg is not None and mats:
            hw = cfg.for_layer(layer.name)
            if not hw.analog:
                click.echo("      digital (analog = false)")
                continue
            for core, (r, c) in mats:
                text, n = _arrays_line(core, r, _has_bias(layer), hw, c)
                total_arrays += n
                click.echo(text)
        if weights and mats and cfg is not None:
            for key in ("kernel", "depthwise_kernel", "weight_ih", "weight_hh"):
                if key in layer.weights:
                    click.echo(weight_report(np.asarray(layer.weights[key], dtype=np.float64), cfg.for_layer(layer.name)))
    click.echo(f"total parameters {total_params}" + (f", arrays {total_arrays}" if cfg is not None else ""))
