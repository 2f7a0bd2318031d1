"""Whole inference runs: :func:`run` and its :class:`Result`.

``run(config)`` loads the model and the test split, measures the
floating-point (ideal) accuracy once, then for each of ``Nruns`` runs programs
a fresh chip (``Simulation`` with seed ``seed + i``: new programming errors)
and streams the test images through it in batches of ``ntest_batch``, so only
one batch is in memory.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from simulator.config import Config, load_config
from simulator.network import Network, load_model
from simulator.simulation import Simulation

log = logging.getLogger("xbarsim.run")


@dataclass
class Result:
    """Accuracy of every run, with the ideal accuracy and the speed."""

    config: Config
    model_name: str
    rows: list[dict[str, Any]]  # one per run: run, seed, accuracy (+ top<k>)
    ideal_accuracy: float
    seconds_per_image: float
    ideal_seconds_per_image: float
    n_images: int
    ideal_topk: dict[int, float] = field(default_factory=dict)

    @property
    def accuracies(self) -> np.ndarray:
        return np.array([r["accuracy"] for r in self.rows])

    @property
    def mean(self) -> float:
        return float(self.accuracies.mean())

    @property
    def std(self) -> float:
        return float(self.accuracies.std(ddof=1)) if len(self.rows) > 1 else 0.0

    @property
    def seeds(self) -> list[int]:
        return [r["seed"] for r in self.rows]

    def to_frame(self):
        """pandas DataFrame, one row per run: run, seed, accuracy (+ top<k>), seconds_per_image."""
        import pandas as pd

        return pd.DataFrame(self.rows)

    def table(self) -> str:
        """The final table printed by ``xbarsim run``."""
        ratio = self.seconds_per_image / self.ideal_seconds_per_image if self.ideal_seconds_per_image else float("nan")
        lines = [
            f"model {self.model_name}, {self.n_images} images, {len(self.rows)} run(s), seeds {self.seeds[0]}..{self.seeds[-1]}",
            f"  simulated accuracy   {100 * self.mean:7.2f} % +- {100 * self.std:.2f} %",
            f"  ideal accuracy       {100 * self.ideal_accuracy:7.2f} %",
            f"  time per image       {1e3 * self.seconds_per_image:9.3f} ms  ({ratio:.1f}x the floating-point forward pass)",
        ]
        for k, v in self.ideal_topk.items():
            if k != 1:
                sim = np.mean([r[f"top{k}"] for r in self.rows])
                lines.append(f"  top-{k} accuracy       {100 * sim:7.2f} %  (ideal {100 * v:.2f} %)")
        return "\n".join(lines)


def _topks(cfg: Config) -> list[int]:
    ks = cfg.topk if isinstance(cfg.topk, list) else [cfg.topk]
    return sorted(set(int(k) for k in ks) | {1})


def _correct(out: np.ndarray, labels: np.ndarray, ks: list[int]) -> dict[int, int]:
    out = out.reshape(out.shape[0], -1)
    order = np.argsort(-out, axis=1)[:, : max(ks)]
    hits = order == labels[:, None]
    return {k: int(hits[:, :k].any(axis=1).sum()) for k in ks}


#: floating-point accuracy per (model, data selection): sweeps run many points on one model and data set
_IDEAL_CACHE: dict[tuple, tuple] = {}

_IDEAL_KEYS = ("model_name", "task", "dataset_path", "ntest", "nstart", "randomSampling", "dataset_normalization",
               "subtract_pixel_mean", "fold_batchnorm", "ignoredLayerTypes", "topk", "ntest_batch")


def _ideal_key(cfg: Config) -> tuple | None:
    from simulator.models import resolve_model_path

    if cfg.randomSampling and cfg.seed is None:
        return None  # a fresh random selection every call

    path = resolve_model_path(cfg.model_name)
    values = tuple(str(getattr(cfg, k)) for k in _IDEAL_KEYS)
    seed = cfg.seed if cfg.randomSampling else None
    return (str(path), path.stat().st_mtime_ns, seed) + values


def load_test_dataset(cfg: Config, split: str = "test"):
    from simulator.io.datasets import load_dataset

    return load_dataset(cfg.model_dump(), split=split)


def run(
    config: Config | dict | str | None = None,
    *,
    runs: list[int] | None = None,
    progress: bool = False,
    network: Network | None = None,
    dataset=None,
    echo: Callable[[str], None] | None = None,
) -> Result:
    """Run ``Nruns`` inference simulations (or only the run indices in ``runs``).

    Run ``i`` uses seed ``config.seed + i`` (a random base seed when the config
    has none; it is recorded in the result).
    """
    cfg = load_config(config)
    net = network if network is not None else load_model(cfg.model_name)
    base_seed = cfg.seed if cfg.seed is not None else int(np.random.SeedSequence().entropy % (2**31))
    indices = list(range(cfg.Nruns)) if runs is None else list(runs)
    ks = _topks(cfg)

    # calibrated ranges, read once for every run
    from simulator.calibration_io import calibration_for

    calib = calibration_for(net, cfg)
    # ideal (floating-point) reference, once
    ref = Simulation(net, cfg.with_overrides({"error_model": "none", "noise_model": "none", "drift_model": "none"})
                     if cfg.error_model != "none" or cfg.noise_model != "none" or cfg.drift_model != "none" else cfg,
                     seed=base_seed, calibration=calib)
    data = dataset if dataset is not None else load_test_dataset(cfg)
    t0 = time.perf_counter()
    ideal_hits = {k: 0 for k in ks}
    n = 0
    for x, y in data.iter_batches(layout=net.input_layout):
        hits = _correct(ref.ideal_forward(x), np.asarray(y), ks)
        for k in ks:
            ideal_hits[k] += hits[k]
        n += len(y)
    ideal_time = (time.perf_counter() - t0) / max(n, 1)
    ideal_topk = {k: ideal_hits[k] / max(n, 1) for k in ks}

    rows = []
    total_time = 0.0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(indices) * n, unit="img", dynamic_ncols=True, leave=False)
    for i in indices:
        seed = base_seed + i
        t0 = time.perf_counter()
        sim = Simulation(net, cfg, seed=seed, calibration=calib)
        hits = {k: 0 for k in ks}
        seen = 0
        next_report = cfg.count_interval
        for x, y in data.iter_batches(layout=net.input_layout):
            h = _correct(sim.forward(x), np.asarray(y), ks)
            for k in ks:
                hits[k] += h[k]
            seen += len(y)
            if bar is not None:
                bar.update(len(y))
                bar.set_postfix(run=i, acc=f"{100 * hits[1] / seen:.2f}%")
            if echo is not None and cfg.count_interval and seen >= next_report:
                msg = f"run {i}: {seen} images, accuracy {100 * hits[1] / seen:.2f} %"
                if cfg.time_interval:
                    msg += f", {time.perf_counter() - t0:.1f} s"
                echo(msg)
                next_report += cfg.count_interval
        elapsed = time.perf_counter() - t0
        total_time += elapsed
        row = {"run": i, "seed": seed, "accuracy": hits[1] / max(seen, 1)}
        for k in ks:
            if k != 1:
                row[f"top{k}"] = hits[k] / max(seen, 1)
        row["seconds_per_image"] = elapsed / max(seen, 1)
        rows.append(row)
        log.info("run %d (seed %d): accuracy %.4f", i, seed, row["accuracy"])
    if bar is not None:
        bar.close()
    return Result(
        config=cfg, model_name=net.name, rows=rows, ideal_accuracy=ideal_topk[1],
        seconds_per_image=total_time / max(len(indices) * n, 1), ideal_seconds_per_image=ideal_time,
        n_images=n, ideal_topk=ideal_topk,
    )
