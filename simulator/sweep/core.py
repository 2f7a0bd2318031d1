"""The sweep driver: validate every point, then run (point, run) tasks and store results."""
from __future__ import annotations

import datetime
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional

from simulator.config import Config, load_config
from simulator.sweep import store as _store
from simulator.sweep.executors import Executor, Runner, Task, make_executor
from simulator.sweep.spec import (
    MAX_POINTS,
    Param,
    SweepError,
    SweepSpec,
    as_params,
    describe_values,
    point_values,
    resolve_points,
)


@dataclass
class SweepResult:
    """What a finished sweep left on disk, also as DataFrames."""

    folder: Path
    results: Any  # pandas.DataFrame, one row per (point, run)
    summary: Any  # pandas.DataFrame, one row per point
    plot: Optional[Path]
    npoints: int
    nruns: int
    resumed_points: int  # points found complete on disk (skipped)
    note: Optional[str] = None  # why no plot was drawn, if none was


def run_sweep(
    config: "str | Path | Mapping[str, Any] | Config",
    params: Iterable["str | Param | tuple"],
    *,
    zip: bool = False,
    workers: Optional[int] = None,
    scheduler: Optional[str] = None,
    scheduler_timeout: float = 10.0,
    resume: bool = False,
    name: Optional[str] = None,
    out: "str | Path" = "sweeps",
    seed: int = 0,
    overrides: Optional[Mapping[str, Any]] = None,
    runner: Optional[Runner] = None,
    executor: Optional[Executor] = None,
    progress: bool = False,
    plot: bool = True,
    echo: Optional[Callable[[str], None]] = None,
    max_points: int = MAX_POINTS,
) -> SweepResult:
    """Sweep config parameters; write ``<out>/<name>/`` (see :mod:`simulator.sweep.store`).

    ``params``: ``"NAME=VALUES"`` strings (as ``--param``), :class:`Param`
    objects or ``(name, values)`` pairs. ``workers``: 1 = in this process,
    N = N local processes (default: one per CPU); ``scheduler``: a Dask
    scheduler address instead. Every point uses base seed ``seed`` (run i
    uses ``seed + i``), so results do not depend on where runs execute.
    ``runner`` replaces :func:`simulator.run` (it must pickle for workers > 1).

    Everything is validated (every point, the output folder, the scheduler
    connection) before anything is written. An interrupted sweep keeps every
    finished point; call again with ``resume=True`` to finish it.
    """
    say = echo or (lambda msg: None)
    base, spec, configs, seed = _validated(config, params, zip=zip, seed=seed, overrides=overrides,
                                           max_points=max_points, say=say)
    pvals = point_values(configs, spec)
    nruns = base.Nruns
    npoints = len(configs)
    desc = _describe(base, spec, pvals, nruns, seed)
    folder_name = _store.check_name(name) if name else _store.default_name(base.source, spec.names)
    from simulator.validation import check_output_dir

    check_output_dir(Path(out) / folder_name, "sweep folder", SweepError)  # before anything runs
    store = _store.SweepStore(Path(out) / folder_name)
    complete = store.check(desc, resume=resume, npoints=npoints, nruns=nruns)
    # connect to the cluster (if any) before writing anything
    own_executor = executor is None
    if executor is None:
        executor = make_executor(workers, scheduler, timeout=scheduler_timeout)
    try:
        store.lock()
        # another driver may have written here since the check above
        complete = store.check(desc, resume=resume, npoints=npoints, nruns=nruns)
        store.open(desc, [
            f"# sweep {folder_name}, point {k}: {spec.label(k)}\n"
            f"# run i of this point uses seed {seed} + i\n" + cfg.to_toml()
            for k, cfg in enumerate(configs)
        ])
        todo = [k for k in range(npoints) if k not in complete]
        say(f"sweep {folder_name}: {npoints} point(s) x {nruns} run(s)"
            + (f", {len(complete)} already complete" if complete else "")
            + f" -> {store.folder}" + (f" [{executor.describe()}]" if todo else ""))
        for p in spec.params:
            say(f"  {p.name}: {describe_values(p.values)}")
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=npoints, initial=len(complete), unit="point", desc=folder_name, file=sys.stderr)
        _run_points(executor, runner, store, spec, configs, pvals, todo, nruns, seed, bar)
        if own_executor:
            executor.close()
        return _report(store, spec, pvals, base, folder_name, plot, npoints, len(complete))
    finally:
        if own_executor:
            executor.close()
        store.unlock()


def _validated(config, params, *, zip: bool, seed, overrides, max_points: int, say):
    """``(base config, spec, config of every point, seed)``, every point validated."""
    if seed is None or int(seed) < 0:
        raise SweepError(f"--seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    base = load_config(config)
    if overrides:
        bad = [k for k in overrides if k in ("seed",)]
        if bad:
            raise SweepError("--set seed=...: the sweep's base seed is set with --seed")
        base = base.with_overrides(overrides)
    spec = SweepSpec(as_params(params), zip=zip, max_points=max_points)
    if len(spec.points) > 1000:
        say(f"validating {len(spec.points)} sweep points ...")
    return base, spec, resolve_points(base, spec, seed=seed), seed


def _run_points(executor, runner, store, spec, configs, pvals, todo: list[int], nruns: int, seed: int, bar) -> None:
    """Run every (point, run) of the points ``todo``; a point's rows are stored once all its runs are in."""
    try:
        labels = {k: f"sweep point {k} ({spec.label(k)})" for k in todo}
        dicts = {k: configs[k].to_dict() for k in todo}
        tasks = [Task(k, i, dicts[k], labels[k]) for k in todo for i in range(nruns)]
        pending: dict[int, dict[int, dict]] = {k: {} for k in todo}
        for task, payload in executor.run(tasks, runner):
            got = pending[task.point]
            got[task.run] = payload
            if len(got) < nruns:
                continue
            rows = _rows(task.point, pvals[task.point], got, nruns, seed)
            store.append(rows)
            del pending[task.point]
            if bar is not None:
                accs = [float(r["accuracy"]) for r in rows]
                bar.set_postfix_str(f"{spec.label(task.point)}: acc {sum(accs) / len(accs):.4f}", refresh=False)
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()


def _report(store, spec, pvals, base: Config, folder_name: str, plot: bool, npoints: int, resumed: int) -> SweepResult:
    """Sorted results, the summary CSV and (with ``plot``) the plot of a finished sweep."""
    from simulator.sweep.report import plot_summary, summarize

    store.sort_results()
    results = store.read_frame()
    summary = summarize(results, spec, pvals)
    _store.atomic_write(store.summary_path, summary.to_csv(index=False))
    note, plot_path = None, None
    if plot:
        note = plot_summary(summary, spec, store.plot_path, title=folder_name, nruns=base.Nruns,
                            witin=_has_witin_layers(base))
        plot_path = None if note else store.plot_path
    return SweepResult(store.folder, results, summary, plot_path, npoints, base.Nruns, resumed, note)


def _has_witin_layers(cfg: Config) -> bool:
    """Whether the model of ``cfg`` has witin chip layers (its reference accuracy is then the float network's)."""
    from simulator.model_files import load_model_for

    layers = getattr(load_model_for(cfg), "layers", [])
    return any(getattr(layer, "attrs", {}).get("witin") for layer in layers)


def _rows(point: int, values: Mapping[str, Any], payloads: Mapping[int, dict], nruns: int, seed: int) -> list[dict]:
    rows = []
    for i in range(nruns):
        p = payloads[i]
        rec = dict(p["rows"][0])
        row: dict[str, Any] = {"point": point, **values}
        row["run"] = int(rec.pop("run", i))
        row["seed"] = rec.pop("seed", seed + i)
        if "accuracy" not in rec:
            raise RuntimeError(f"sweep point {point}: the runner's result has no 'accuracy' column")
        row["accuracy"] = rec.pop("accuracy")
        ideal = rec.pop("ideal_accuracy", None)
        spi = rec.pop("seconds_per_image", None)
        for k, v in rec.items():
            if k not in row:
                row[k] = v
        ideal = p.get("ideal_accuracy") if p.get("ideal_accuracy") is not None else ideal
        spi = p.get("seconds_per_image") if p.get("seconds_per_image") is not None else spi
        if ideal is not None:
            row["ideal_accuracy"] = ideal
        row["seconds_per_image"] = spi
        rows.append(row)
    return rows


def _describe(base: Config, spec: SweepSpec, pvals, nruns: int, seed: int) -> dict[str, Any]:
    import simulator

    cfg = base.to_dict()
    cfg["seed"] = seed
    return {
        "format": _store.FORMAT,
        "base_config": cfg,
        "params": [p.to_dict() for p in spec.params],
        "zip": bool(spec.zip),
        "Nruns": nruns,
        "seed": seed,
        "points": pvals,
        "info": {
            "config_source": base.source,
            "xbarsim_version": getattr(simulator, "__version__", "?"),
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(sys.argv),
        },
    }
