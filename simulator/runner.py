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
from simulator.errors import ConfigError
from simulator.model_files import load_model_for
from simulator.network import Network
from simulator.simulation import Simulation
from simulator.validation import check_labels

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
    #: the same graph's floating-point forward pass in float32 (s/image); None where the host has no float32 pass
    float32_seconds_per_image: float | None = None
    #: what the ideal accuracy is the accuracy of (printed next to it)
    reference: str = "floating point, no analog effects"

    @property
    def times(self) -> list[float]:
        """The inference times (days after programming) every run was evaluated at, ascending."""
        return sorted({float(r["t_drift"]) for r in self.rows}) if self.rows else [0.0]

    def at(self, t_drift: float) -> list[dict[str, Any]]:
        """The rows (one per run) at inference time ``t_drift`` (days)."""
        return [r for r in self.rows if r["t_drift"] == t_drift]

    @property
    def accuracies(self) -> np.ndarray:
        """Accuracy of every run at the last (latest) inference time."""
        return np.array([r["accuracy"] for r in self.at(self.times[-1])])

    def accuracy_vs_time(self) -> list[tuple[float, float, float]]:
        """``(t_drift, mean, std)`` per inference time (std with ddof = 1 over the runs, 0 for one run)."""
        out = []
        for t in self.times:
            acc = np.array([r["accuracy"] for r in self.at(t)])
            out.append((t, float(acc.mean()), float(acc.std(ddof=1)) if len(acc) > 1 else 0.0))
        return out

    @property
    def mean(self) -> float:
        return float(self.accuracies.mean())

    @property
    def std(self) -> float:
        return float(self.accuracies.std(ddof=1)) if len(self.rows) > 1 else 0.0

    @property
    def seeds(self) -> list[int]:
        return [r["seed"] for r in self.at(self.times[0])]

    def to_frame(self):
        """pandas DataFrame, one row per run and inference time: run, seed, t_drift (days), accuracy (+ top<k>),
        seconds_per_image."""
        import pandas as pd

        return pd.DataFrame(self.rows)

    def table(self) -> str:
        """The final table printed by ``xbarsim run``."""
        seeds = self.seeds
        lines = [f"model {self.model_name}, {self.n_images} images, {len(seeds)} run(s), seeds {seeds[0]}..{seeds[-1]}"]
        several = len(self.times) > 1
        for t in self.times:
            rows = self.at(t)
            acc = np.array([r["accuracy"] for r in rows])
            std = float(acc.std(ddof=1)) if len(acc) > 1 else 0.0
            if several:
                lines.append(f"t_drift = {format_days(t)}")
            spread = f" +- {100 * std:.2f} %  (mean +- std over {len(acc)} runs)" if len(acc) > 1 else "  (one run)"
            lines.append(f"  simulated accuracy   {100 * acc.mean():7.2f} %{spread}")
            for k, v in self.ideal_topk.items():
                if k != 1:
                    sim = np.mean([r[f"top{k}"] for r in rows])
                    lines.append(f"  top-{k} accuracy       {100 * sim:7.2f} %  (ideal {100 * v:.2f} %)")
        lines.append(f"  ideal accuracy       {100 * self.ideal_accuracy:7.2f} %  ({self.reference})")
        if len(seeds) > 1 or self.mean != self.ideal_accuracy:
            drop = 100 * (self.ideal_accuracy - self.accuracies)
            spread = f" +- {float(drop.std(ddof=1)):.2f}" if len(drop) > 1 else ""
            lines.append(f"  accuracy drop        {float(drop.mean()):7.2f}{spread} points against ideal"
                         + (" (mean +- std over the runs)" if spread else " (one run)"))
        lines.append("  " + self.timing())
        return "\n".join(lines)

    def timing(self) -> str:
        """The time per image in plain words: simulated, and how many times a floating-point pass that is."""
        ref, name = ((self.float32_seconds_per_image, "float32") if self.float32_seconds_per_image
                     else (self.ideal_seconds_per_image, "float64"))
        text = f"time per image       {1e3 * self.seconds_per_image:9.3f} ms simulated"
        if ref:
            ratio = self.seconds_per_image / ref
            how = f"{ratio:.1f} times slower" if ratio >= 1 else f"{1 / ratio:.1f} times faster"
            text += (f"; the plain {name} forward pass of the same network takes {1e3 * ref:.3f} ms "
                     f"(simulation {how})")
        return text

    def plot_vs_time(self, path) -> None:
        """Write accuracy versus inference time (log time axis, mean +- std over the runs) to ``path``."""
        plot_accuracy_vs_time({"simulated": self.accuracy_vs_time()}, path, ideal=self.ideal_accuracy,
                              title=f"{self.model_name}: accuracy after programming ({len(self.seeds)} run(s))")


def format_days(t: float) -> str:
    """A time in days as a short readable string (``20 s``, ``1 h``, ``30 d``, ``1 y``)."""
    if t == 0:
        return "0 (as programmed)"
    sec = t * 86400.0
    for unit, size in (("y", 365 * 86400.0), ("d", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if sec >= size:
            return f"{sec / size:.4g} {unit} ({t:g} d)" if unit != "d" else f"{t:g} d"
    return f"{sec:.4g} s ({t:g} d)"


def plot_accuracy_vs_time(curves: dict[str, list[tuple[float, float, float]]], path, *, ideal: float | None = None,
                          title: str = "") -> None:
    """Plot ``{label: [(t_days, mean, std), ...]}`` as accuracy (%) versus time on a log axis to ``path``.

    Time 0 ("as programmed") cannot sit on a log axis; it is drawn at one
    tenth of the smallest non-zero time and labelled so.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nonzero = [t for pts in curves.values() for t, _, _ in pts if t > 0]
    t0 = (min(nonzero) if nonzero else 1.0) / 10.0
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, pts in curves.items():
        ts = [t * 86400.0 if t > 0 else t0 * 86400.0 for t, _, _ in pts]
        ax.errorbar(ts, [100 * m for _, m, _ in pts], yerr=[100 * s for _, _, s in pts], marker="o", capsize=3,
                    label=label)
    if ideal is not None:
        ax.axhline(100 * ideal, color="k", linestyle=":", linewidth=1, label="floating point")
    if any(t == 0 for pts in curves.values() for t, _, _ in pts):
        ax.axvline(t0 * 86400.0, color="grey", linewidth=0.5)
        ax.annotate("t = 0", (t0 * 86400.0, ax.get_ylim()[0]), fontsize=8, rotation=90, va="bottom", ha="right")
    ax.set_xscale("log")
    ax.set_xlabel("time after programming (s)")
    ax.set_ylabel("accuracy (%) -- mean +- std over runs")
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _topks(cfg: Config) -> list[int]:
    ks = cfg.topk if isinstance(cfg.topk, list) else [cfg.topk]
    return sorted(set(int(k) for k in ks) | {1})


def primary_output(out):
    """The class scores of a forward result: the array itself, a dict's ``logits`` (else first) entry, a tuple's first."""
    if isinstance(out, dict):
        out = out["logits"] if "logits" in out else next(iter(out.values()))
        return primary_output(out)
    if isinstance(out, (tuple, list)):
        return primary_output(out[0])
    return np.asarray(out)


def count_correct(out: np.ndarray, labels: np.ndarray, ks: list[int]) -> dict[int, int]:
    """``{k: images whose label is among the top-k outputs}`` of one batch (``out``: (N, classes), any host output)."""
    out = primary_output(out)
    out = out.reshape(out.shape[0], -1)
    order = np.argsort(-out, axis=1)[:, : max(ks)]
    hits = order == labels[:, None]
    return {k: int(hits[:, :k].any(axis=1).sum()) for k in ks}


def _data_name(cfg: Config, data) -> str:
    """The dataset's name for messages."""
    return getattr(getattr(data, "source", None), "description", None) or cfg.dataset_path or f"task {cfg.task!r}"


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
    net = network if network is not None else load_model_for(cfg)
    base_seed = cfg.seed if cfg.seed is not None else int(np.random.SeedSequence().entropy % (2**31))
    indices = list(range(cfg.Nruns)) if runs is None else list(runs)
    ks = _topks(cfg)

    # calibrated ranges, read once for every run
    from simulator.calibration_io import calibration_for

    calib = calibration_for(net, cfg)
    ref = _ideal_reference(net, cfg, base_seed, calib)  # ideal (floating-point) reference, once
    data = dataset if dataset is not None else load_test_dataset(cfg)
    ideal_topk, n, ideal_time = _ideal_pass(ref, data, cfg, net, ks)
    float32_time = _float32_seconds_per_image(ref, data, net.input_layout)

    rows = []
    total_time = 0.0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(indices) * len(cfg.drift_times) * n, unit="img", dynamic_ncols=True, leave=False)
    for i in indices:
        seed = base_seed + i
        t0 = time.perf_counter()
        sim = Simulation(net, cfg, seed=seed, calibration=calib)  # programmed once per run
        for t_days in cfg.drift_times:
            if t_days != sim.t_drift:
                t0 = time.perf_counter()
                sim.set_drift_time(t_days)  # drift from the same programmed state
            hits, seen = _accuracy_pass(sim, data, cfg, net, ks, i, t_days, t0, bar, echo)
            elapsed = time.perf_counter() - t0
            total_time += elapsed
            row = {"run": i, "seed": seed, "t_drift": float(t_days), "accuracy": hits[1] / max(seen, 1)}
            for k in ks:
                if k != 1:
                    row[f"top{k}"] = hits[k] / max(seen, 1)
            row["seconds_per_image"] = elapsed / max(seen, 1)
            rows.append(row)
            log.info("run %d (seed %d), t_drift %g d: accuracy %.4f", i, seed, t_days, row["accuracy"])
    if bar is not None:
        bar.close()
    return Result(
        config=cfg, model_name=net.name, rows=rows, ideal_accuracy=ideal_topk[1],
        seconds_per_image=total_time / max(len(indices) * len(cfg.drift_times) * n, 1), ideal_seconds_per_image=ideal_time,
        n_images=n, ideal_topk=ideal_topk, float32_seconds_per_image=float32_time,
        reference=("float network: no chip quantization, no noise"
                   if any((getattr(layer, "attrs", None) or {}).get("witin") for layer in getattr(net, "layers", []))
                   else Result.reference),
    )


def _ideal_reference(net: Network, cfg: Config, seed: int, calib) -> Simulation:
    """The Simulation whose ``ideal_forward`` is the floating-point reference (no device models, no export)."""
    ref_cfg = cfg.with_overrides({"export_conductances": False}) if cfg.export_conductances else cfg  # runs export
    if cfg.error_model != "none" or cfg.noise_model != "none" or cfg.drift_model != "none":
        ref_cfg = ref_cfg.with_overrides({"error_model": "none", "noise_model": "none", "drift_model": "none",
                                          "device_params": {}, "t_drift": 0.0})
    return Simulation(net, ref_cfg, seed=seed, calibration=calib)


def _ideal_pass(ref: Simulation, data, cfg: Config, net: Network, ks: list[int]) -> tuple[dict[int, float], int, float]:
    """``(top-k accuracy of the floating-point pass, images, seconds per image)``; checks topk and the labels."""
    t0 = time.perf_counter()
    ideal_hits = {k: 0 for k in ks}
    n = 0
    for x, y in data.iter_batches(layout=net.input_layout):
        out = primary_output(ref.ideal_forward(x))
        n_classes = out.reshape(len(out), -1).shape[1]
        if max(ks) > n_classes:
            raise ConfigError(f"{cfg.source}: topk = {cfg.topk!r} but model {net.name!r} has {n_classes} outputs "
                              "(top-k accuracy needs k <= the number of classes)")
        check_labels(y, n_classes, _data_name(cfg, data), n)
        hits = count_correct(out, np.asarray(y), ks)
        for k in ks:
            ideal_hits[k] += hits[k]
        n += len(y)
    ideal_time = (time.perf_counter() - t0) / max(n, 1)
    return {k: ideal_hits[k] / max(n, 1) for k in ks}, n, ideal_time


def _accuracy_pass(sim, data, cfg: Config, net: Network, ks: list[int], i: int, t_days: float, t0: float, bar,
                   echo) -> tuple[dict[int, int], int]:
    """Stream the test images through run ``i``'s chip at ``t_days``: ``(hits per k, images)``; reports progress."""
    hits = {k: 0 for k in ks}
    seen = 0
    next_report = cfg.count_interval
    for x, y in data.iter_batches(layout=net.input_layout):
        # image_offset keys the read noise by image index (the same draws at every drift time)
        h = count_correct(sim.forward(x, image_offset=seen), np.asarray(y), ks)
        for k in ks:
            hits[k] += h[k]
        seen += len(y)
        if bar is not None:
            bar.update(len(y))
            bar.set_postfix(run=i, acc=f"{100 * hits[1] / seen:.2f}%")
        if echo is not None and cfg.count_interval and seen >= next_report:
            at = f" at t_drift = {t_days:g} d" if len(cfg.drift_times) > 1 else ""
            msg = f"run {i}{at}: {seen} images, accuracy {100 * hits[1] / seen:.2f} %"
            if cfg.time_interval:
                msg += f", {time.perf_counter() - t0:.1f} s"
            echo(msg)
            next_report += cfg.count_interval
    return hits, seen


#: images timed for the float32 reference (whole batches, at least this many when the split has them)
FLOAT32_TIMING_IMAGES = 512


def _float32_seconds_per_image(ref, data, layout: str) -> float | None:
    """Seconds per image of ``ref``'s floating-point forward pass in float32 on the first test batches.

    None for hosts whose ideal pass has no ``dtype`` and for models whose float32 pass is not finite (weights
    beyond float32's range): the table then compares with the float64 pass and says so.
    """
    import inspect

    if "dtype" not in inspect.signature(ref.ideal_forward).parameters:
        return None
    seen, elapsed = 0, 0.0
    for x, _ in data.iter_batches(layout=layout):
        with np.errstate(over="ignore", invalid="ignore"):  # weights beyond float32's range: checked below
            if not seen:
                # builds the float32 weights outside the timing; a model float32 cannot hold has no float32 pass
                if not np.all(np.isfinite(primary_output(ref.ideal_forward(x[:1], dtype="float32")))):
                    return None
            t0 = time.perf_counter()
            ref.ideal_forward(x, dtype="float32")
            elapsed += time.perf_counter() - t0
        seen += len(x)
        if seen >= FLOAT32_TIMING_IMAGES:
            break
    return elapsed / seen if seen else None


def load_dataset(config: Config | dict | str | None = None, *, split: str = "test", n: int | None = None,
                 network: Network | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of the config's task, ready for ``Simulation.forward``: ``(x, y)``.

    ``x``: float32, scaled as the runs scale them (``dataset_normalization``,
    ``subtract_pixel_mean``) and in the model's layout (``network.input_layout``:
    ``"NHWC"`` or ``"NCHW"`` for 4-D images; the model named by ``model_name``
    when ``network`` is not given); ``y``: int64 class labels. ``split``:
    ``"test"`` (the split ``run`` scores) or ``"calibration"`` (disjoint from
    it); ``n``: the first ``n`` selected images (default: the config's
    ``ntest``, 0 = the whole split).
    """
    cfg = load_config(config)
    if n is not None:
        if int(n) < 1:
            raise ConfigError(f"load_dataset: n = {n!r}, expected a number of images >= 1")
        cfg = cfg.with_overrides({"ntest": int(n)})
    net = network if network is not None else load_model_for(cfg)
    from simulator.io.datasets import load_dataset as select

    data = select(cfg.model_dump(), split=split)
    xs, ys = [], []
    for x, y in data.iter_batches(layout=net.input_layout):
        xs.append(x)
        ys.append(np.asarray(y))
    if not xs:
        return np.empty((0,) + tuple(net.input_shape), np.float32), np.empty(0, np.int64)
    return np.concatenate(xs), np.concatenate(ys)


#: a layer's "max" ADC range is reported when it uses less than this fraction of the ADC's levels
ADC_LEVELS_WARN_FRACTION = 0.5


def adc_range_warnings(config: Config | dict | str | None = None, network: Network | None = None, *,
                       n_images: int = 64) -> list[str]:
    """Lines to print when ``adc_range_option = "max"`` ADCs leave most of their levels unused (else ``[]``).

    The worst-case ("max") range covers every output the weights could give,
    so real outputs often span only a few of the ADC's levels and accuracy
    collapses at low ``adc_bits``. The levels used are measured with
    ``Simulation.observe`` on the first ``n_images`` test images (seed
    ``config.seed``); layers using fewer than ``ADC_LEVELS_WARN_FRACTION`` of
    their levels are listed, followed by the fix: calibrated ranges.
    """
    cfg = load_config(config)
    hardware = [cfg, *(cfg.for_layer(name) for name in cfg.layers)]
    if not any(h.adc_range_option == "max" and h.adc_bits > 0 for h in hardware):
        return []
    net = network if network is not None else load_model_for(cfg)
    from simulator.calibration_io import calibration_for
    from simulator.observe import neural_cores

    x, _ = load_dataset(cfg, n=n_images, network=net)
    sim = Simulation(net, cfg, seed=cfg.seed or 0, calibration=calibration_for(net, cfg))
    with sim.observe(adc=True, dac=False) as rec:
        sim.forward(x)
    low = []
    for layer_name, core_name, _ in neural_cores(sim):
        hp = cfg.for_layer(layer_name)
        if hp.adc_range_option != "max" or hp.adc_bits <= 0 or core_name not in rec.observations:
            continue
        use = rec[core_name].adc
        frac = use.levels_used_fraction
        if frac == frac and frac < ADC_LEVELS_WARN_FRACTION:  # NaN: the layer converted nothing
            low.append(f"{core_name} {100 * frac:.0f} % of {2 ** hp.adc_bits} ({use.effective_bits:.1f} of "
                       f"{hp.adc_bits} bits)")
    if not low:
        return []
    return [f"\"max\" ADC ranges leave most ADC levels unused (levels used, effective bits; first {len(x)} test "
            f"images): {', '.join(low)}",
            "  the worst-case range is far wider than the layers' real outputs; calibrated ranges fit them: "
            "`xbarsim calibrate CONFIG`, then adc_range_option = \"calibrated\" (calibration/README.md)"]
