"""``diagnose(config)``: where the accuracy goes, layer by layer and cause by cause.

Steps (one chip: seed ``config.seed``, else 0; the test images selected by
``ntest``):

1. **Observed pass.** The full non-ideal chip runs the test images with a
   :class:`~simulator.observe.Recorder` attached: for every analog core the
   relative RMS error and SNR of its output against the ideal output on the
   *same inputs* (so upstream errors are not counted again), DAC/ADC clipping
   and level use, Icol_max clipping, and a uniform sample of input rows.
   Where an elementwise activation directly follows the layer (a fused
   activation, or a sole ``Activation`` consumer), outputs are compared
   after it -- what the next layer sees; ReLU-aware ADC ranges clip outputs
   the ReLU zeroes anyway. The floating-point and simulated accuracies come
   from the same pass.
2. **Cause split (first order).** For every cause -- weight quantization,
   programming error / drift, read noise, parasitics, current limit, DAC,
   ADC -- a chip with only that non-ideality switched on (the others set to
   their ideal values) is built, and each core's sampled inputs go through
   that core: its error alone. A cause that cannot exist alone (an ADC
   range set for bit-sliced weights or bit-sliced inputs) is switched on
   with what it needs, and its error is the increase of the mean squared
   error over those prerequisites alone. The causes' errors need not add up
   to the whole (they interact: an ADC clips noise, too).
3. **Sensitivity.** Accuracy when only this layer is non-ideal (every
   non-ideality of every other MVM layer switched off by ``[layers.<name>]``
   overrides; a layer whose settings cannot be undone that way runs exact
   digital, ``analog = false``) and when only this layer is ideal. These
   runs are independent: they go to the sweep executors (local processes or
   a Dask cluster), with a progress bar.

Errors whose relative RMS is below ``256 * eps`` of the simulation's float
type are reported as 0 (SNR inf): that is the resolution of the arithmetic.
Memory stays bounded by the batch size, the recorder's histograms and its
``samples`` rows per layer.
"""
from __future__ import annotations

import functools
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional

import numpy as np

from simulator.config import Config, load_config
from simulator.diagnosis.causes import (
    CAUSES,
    active_causes,
    cause_sets,
    layers_ideal,
    minimal_config,
    prerequisites,
    variant_config,
)
from simulator.diagnosis.results import DiagnoseReport, layer_diagnosis
from simulator.errors import ConfigError, OutputError, XbarsimError

log = logging.getLogger("xbarsim.diagnose")


def _post_function(sim, layer_name: str, core_name: str):
    """The elementwise activation applied right after this layer in a graph host, else None."""
    if core_name != layer_name:  # GRU cores: the gates mix both products
        return None
    layers = getattr(sim, "layers", None)
    outputs = getattr(sim, "outputs", None)
    if not isinstance(layers, list) or outputs is None:
        return None
    by_name = {getattr(l, "name", None): l for l in layers}
    layer = by_name.get(layer_name)
    if layer is None:
        return None
    act = layer.config.get("activation")
    if act in (None, "linear") and layer_name not in outputs:
        consumers = [l for l in layers if layer_name in l.inputs]
        if len(consumers) == 1 and consumers[0].type == "Activation":
            act = consumers[0].config.get("activation")
    if act in (None, "linear", "softmax"):
        return None
    from simulator import ops

    return lambda v, xp, act=act: ops.activation(v, act, xp)


# ---------------------------------------------------------------------- running
def _check_folder(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise OutputError(f"output folder {str(out)!r} cannot be written ({exc.strerror or exc})") from None


def _input_layout(sim) -> Optional[str]:
    """The layout a host wants its input batches in (None: the dataset's own)."""
    return getattr(sim, "input_layout", None) or getattr(getattr(sim, "network", None), "input_layout", None)


def accuracy_run(cfg, runs=None, progress=False, network=None, simulation=None):
    """What a sensitivity task runs: the simulated top-1 accuracy of one chip, as a one-row Result.

    Like :func:`simulator.run` for one run, without its floating-point pass
    (the diagnosis measures that once). Importable by worker processes; the
    chip is ``simulation(cfg, seed)`` when given, else a Simulation of
    ``network`` (default: the model ``cfg.model_name``).
    """
    import time

    from simulator.calibration_io import calibration_for
    from simulator.model_files import load_model_for
    from simulator.runner import Result, count_correct, load_test_dataset
    from simulator.simulation import Simulation

    cfg = load_config(cfg)
    run_index = runs[0] if runs else 0
    seed = (cfg.seed or 0) + run_index
    t0 = time.perf_counter()
    if simulation is not None:
        sim = simulation(cfg, seed)
    else:
        net = network if network is not None else load_model_for(cfg)
        sim = Simulation(net, cfg, seed=seed, calibration=calibration_for(net, cfg))
    hits = n = 0
    for x, y in load_test_dataset(cfg).iter_batches(layout=_input_layout(sim)):
        hits += count_correct(sim.forward(x), np.asarray(y), [1])[1]
        n += len(y)
    sec = (time.perf_counter() - t0) / max(n, 1)
    row = {"run": run_index, "seed": seed, "accuracy": hits / max(n, 1), "seconds_per_image": sec}
    name = getattr(getattr(sim, "network", None), "name", cfg.model_name)
    return Result(config=cfg, model_name=name, rows=[row], ideal_accuracy=float("nan"), seconds_per_image=sec,
                  ideal_seconds_per_image=float("nan"), n_images=n)


def diagnose(
    config: "str | os.PathLike | Mapping[str, Any] | Config",
    network: Any = None,
    *,
    ntest: Optional[int] = None,
    layers: Optional[Iterable[str]] = None,
    samples: int = 2048,
    workers: Optional[int] = 1,
    scheduler: Optional[str] = None,
    scheduler_timeout: float = 10.0,
    sensitivity: bool = True,
    out: "str | os.PathLike | None" = None,
    plots: bool = True,
    progress: bool = False,
    simulation: Optional[Callable[[Config, int], Any]] = None,
    runner: Optional[Callable[..., Any]] = None,
    seed: Optional[int] = None,
) -> DiagnoseReport:
    """Per-layer error budget of a config (see the module docstring).

    Parameters
    ----------
    ntest: test images (default: the config's ``ntest``; 0 = the whole split).
    layers: layer (or core) names to diagnose (default: every analog layer).
    samples: input rows kept per layer for the cause split.
    workers / scheduler: where the sensitivity runs go (1 = this process;
        N local processes; a Dask scheduler address), as for sweeps.
    sensitivity: run the per-layer accuracy runs (2 per layer).
    out: also write the CSV, plots and HTML page to this folder.
    simulation: ``f(config, seed)`` building the chip (default:
        :class:`~simulator.simulation.Simulation` on ``network``); any host
        whose ``cores`` holds NeuralCores and that has ``forward``,
        ``ideal_forward`` and ``observe`` works; the sensitivity runs use it
        too (it must pickle for workers > 1 or a scheduler).
    runner: ``f(config, runs=[0], progress=False)`` returning a Result, for
        the sensitivity runs (default: :func:`accuracy_run`; must pickle
        for workers > 1).
    """
    cfg, seed = _diagnose_config(config, ntest, seed)
    out_path = Path(out) if out is not None else None
    if out_path is not None:
        _check_folder(out_path)
    user_factory = simulation
    simulation, model_name = _chip_factory(cfg, network, user_factory)

    from simulator.observe import neural_cores
    from simulator.runner import load_test_dataset

    sim = simulation(cfg, seed)
    cores = list(neural_cores(sim))
    all_layers = list(dict.fromkeys(l for l, _, _ in cores))
    cores = _select(cores, layers, cfg, model_name, all_layers)
    sel_layers = list(dict.fromkeys(l for l, _, _ in cores))
    notes: list[str] = []
    data = load_test_dataset(cfg)
    sets = cause_sets(cfg, all_layers)
    bar = _progress_bar(data.n + len(sets) + (2 * len(sel_layers) if sensitivity else 0)) if progress else None
    try:
        post = {c: f for l, c, _ in cores if (f := _post_function(sim, l, c)) is not None}
        rec, accuracy, ideal_accuracy, n = _observed_pass(sim, data, cores, post, samples, seed, bar)
        mse = _cause_errors(cfg, simulation, seed, sets, cores, rec, post, notes, bar)
        prereq = prerequisites(cfg, all_layers)
        diags = [layer_diagnosis(l, c, rec[c], post, mse, prereq) for l, c, _ in cores]
        notes += _floor_notes(diags)
        if sensitivity and sel_layers:
            runner = _sensitivity_runner(runner, user_factory, network, workers == 1 and scheduler is None)
            _sensitivity(cfg, all_layers, sel_layers, diags, workers, scheduler, scheduler_timeout, runner, bar)
    finally:
        if bar is not None:
            bar.close()
    if not sel_layers:
        notes.append("note: the model has no analog MVM layer")
    report = DiagnoseReport(config=cfg, model_name=model_name, n_images=n, seed=seed, ideal_accuracy=ideal_accuracy,
                            accuracy=accuracy, layers=diags, causes=active_causes(cfg, all_layers), notes=notes)
    if out_path is not None:
        report.write(out_path, plots=plots)
    return report


def _chip_factory(cfg: Config, network, simulation) -> tuple[Callable[[Config, int], Any], str]:
    """``(f(config, seed) building the chip, model name)``: the caller's factory, else a Simulation of the model."""
    if simulation is not None:
        return simulation, getattr(network, "name", cfg.model_name)
    net = network if network is not None else _load_network(cfg)
    return functools.partial(_default_simulation, net), net.name


def _sensitivity_runner(runner, user_factory, network, in_process: bool):
    """The runner of the sensitivity runs: the caller's, else :func:`accuracy_run` on the caller's chip or model."""
    if runner is None and user_factory is not None:
        return functools.partial(accuracy_run, simulation=user_factory)  # must pickle for workers
    if runner is None and network is not None and in_process:
        return functools.partial(accuracy_run, network=network)  # in this process: the given model
    return runner


def _progress_bar(total: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="step", dynamic_ncols=True, leave=False, desc="diagnose")


def _floor_notes(diags) -> list[str]:
    """The note on layers that differ from their ideal output with every cause off (empty if none)."""
    floors = [f"{d.core} {d.floor_error:.2g}" for d in diags if d.floor_error > 0]
    if not floors:
        return []
    return ["note: with every cause switched off these layers still differ from their ideal output "
            f"(relative RMS error: {', '.join(floors)}), because their mapping fixes a quantization "
            "(witin layers on arrays keep witin's quantization); each cause's error is counted above "
            "that floor"]


def _diagnose_config(config, ntest: Optional[int], seed: Optional[int]) -> tuple[Config, int]:
    """The config of the diagnosed chip: one run, a fixed seed, ``ntest`` images."""
    cfg = load_config(config)
    if ntest is not None and int(ntest) < 0:
        raise ConfigError(f"--ntest must be >= 0 images (0 = the whole test split), got {ntest}")
    seed = int(seed if seed is not None else (cfg.seed if cfg.seed is not None else 0))
    data = minimal_config(cfg.to_dict())
    data.update(seed=seed, Nruns=1, **({"ntest": int(ntest)} if ntest is not None else {}))
    return load_config(data, name=cfg.source), seed


def _load_network(cfg: Config):
    from simulator.model_files import load_model_for

    return load_model_for(cfg)


def _default_simulation(net, cfg, seed: int):
    """A :class:`~simulator.simulation.Simulation` of ``net`` with the config's calibrated ranges."""
    from simulator.calibration_io import calibration_for
    from simulator.simulation import Simulation

    cfg = load_config(cfg)
    return Simulation(net, cfg, seed=seed, calibration=calibration_for(net, cfg))


def _select(cores: list, layers: Optional[Iterable[str]], cfg: Config, model_name: str, all_layers: list[str]) -> list:
    """The cores named by the layer filter (layer or core names); every core without one."""
    if layers is None:
        return cores
    wanted = list(layers)
    known = {n for l, c, _ in cores for n in (l, c)}
    bad = [n for n in wanted if n not in known]
    if bad or not wanted:
        raise ConfigError(
            f"{cfg.source}: layer filter {', '.join(map(repr, bad or wanted)) or '(empty)'} names no analog layer "
            f"of model {model_name!r}; analog layers: {', '.join(all_layers) or 'none'}")
    return [t for t in cores if t[0] in wanted or t[1] in wanted]


def _observed_pass(sim, data, cores, post, samples: int, seed: int, bar):
    """Run the test images through the non-ideal chip with a recorder: (recorder, accuracy, ideal accuracy, n)."""
    from simulator.runner import count_correct

    hits = ideal_hits = n = 0
    with sim.observe(adc=True, dac=True, layers=[c for _, c, _ in cores], samples=samples, seed=seed,
                     post=post) as rec:
        for x, y in data.iter_batches(layout=_input_layout(sim)):
            y = np.asarray(y)
            hits += count_correct(sim.forward(x), y, [1])[1]
            ideal_hits += count_correct(sim.ideal_forward(x), y, [1])[1]
            n += len(y)
            if bar is not None:
                bar.update(len(y))
    return rec, hits / max(n, 1), ideal_hits / max(n, 1), n


def _cause_errors(cfg, simulation, seed, cause_sets, cores, rec, post, notes, bar) -> dict:
    """``{cause set: {core: (mean squared error, mean squared ideal output, dtype)}}`` on the sampled inputs."""
    from simulator.observe import neural_cores

    mse: dict[frozenset, dict[str, tuple[float, float, str]]] = {}
    for key in cause_sets:
        if bar is not None:
            bar.set_postfix_str(", ".join(sorted(key)) or "ideal")
        mse[key] = {}
        try:
            vsim = simulation(load_config(variant_config(cfg, key), name=cfg.source), seed)
        except XbarsimError as exc:
            notes.append(f"note: {', '.join(CAUSES[c] for c in sorted(key))} could not be switched on alone ({exc})")
            vsim = None
        vcores = {} if vsim is None else {c: core for _, c, core in neural_cores(vsim)}
        for _, cname, _ in cores:
            core, X = vcores.get(cname), rec[cname].samples
            if core is None or X is None:
                continue
            xp = core.xp
            X = xp.asarray(X)
            ref, Y = core.ideal(X), xp.asarray(core(X), dtype=xp.float64)
            f = post.get(cname)
            if f is not None:
                ref, Y = f(ref, xp), f(Y, xp)
            d = Y - ref
            mse[key][cname] = (float(xp.mean(d * d)), float(xp.mean(ref * ref)), str(core.dtype))
        if bar is not None:
            bar.update(1)
    return mse


def _sensitivity(cfg, all_layers, sel_layers, diags, workers, scheduler, timeout, runner, bar) -> None:
    from simulator.sweep.executors import Task, make_executor

    base = minimal_config(cfg.to_dict())
    tasks = []
    for i, lname in enumerate(sel_layers):
        others = [l for l in all_layers if l != lname]
        tasks.append(Task(point=2 * i, run=0, config=layers_ideal(cfg, base, others),
                          label=f"diagnose {lname}: only this layer non-ideal"))
        tasks.append(Task(point=2 * i + 1, run=0, config=layers_ideal(cfg, base, [lname]),
                          label=f"diagnose {lname}: only this layer ideal"))
    acc: dict[int, float] = {}
    with make_executor(workers, scheduler, timeout=timeout) as ex:
        for task, payload in ex.run(tasks, runner or accuracy_run):
            acc[task.point] = float(payload["rows"][0]["accuracy"])
            if bar is not None:
                bar.update(1)
    for i, lname in enumerate(sel_layers):
        for d in diags:
            if d.layer == lname:
                d.acc_only_nonideal = acc.get(2 * i, float("nan"))
                d.acc_only_ideal = acc.get(2 * i + 1, float("nan"))
