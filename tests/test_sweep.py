"""xbarsim sweep: parsing, grid/zip, validation, resumable results, executors, CLI.

Most tests use a deterministic fake runner defined at module level (so that it
pickles into local worker processes and Dask workers); the end-to-end tests at
the bottom use the real ``simulator.run`` on the bundled digits model.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from simulator.cli import cli
from simulator.config import load_config
from simulator.errors import ConfigError, XbarsimError
from simulator.sweep import SweepError, run_sweep
from simulator.sweep.spec import SweepSpec, make_points, parse_param, parse_values, resolve_points
from simulator.sweep.store import SweepStore

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


# ---------------------------------------------------------------- fake runners
class FakeResult:
    def __init__(self, rows):
        self.rows = rows
        self.ideal_accuracy = 0.97
        self.seconds_per_image = 1e-4

    def to_frame(self):
        return pd.DataFrame(self.rows)


def _fake_accuracy(config, seed: int) -> float:
    d = config.to_dict()
    d.pop("seed")
    key = json.dumps(d, sort_keys=True) + f"|{seed}"
    return round(0.80 + (zlib.crc32(key.encode()) % 10000) / 1e5, 6)


def fake_runner(config, *, runs=None, progress=False):
    """Deterministic stand-in for simulator.run: accuracy is a hash of (config, seed)."""
    runs = list(range(config.Nruns)) if runs is None else runs
    rows = [
        {"run": i, "seed": config.seed + i, "accuracy": _fake_accuracy(config, config.seed + i), "top5": 1.0}
        for i in runs
    ]
    return FakeResult(rows)


def slow_fake_runner(config, *, runs=None, progress=False):
    time.sleep(0.15)
    return fake_runner(config, runs=runs, progress=progress)


_CALLS = {"n": 0, "limit": None}


def interrupting_runner(config, *, runs=None, progress=False):
    """fake_runner that raises KeyboardInterrupt (like Ctrl-C) on call number _CALLS['limit']."""
    _CALLS["n"] += 1
    if _CALLS["limit"] is not None and _CALLS["n"] >= _CALLS["limit"]:
        raise KeyboardInterrupt
    return fake_runner(config, runs=runs, progress=progress)


def failing_runner(config, *, runs=None, progress=False):
    raise AssertionError("the runner must not be called")


BASE = {"model_name": "digits_cnn", "task": "digits", "ntest": 50, "Nruns": 2}


def _frame(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "results.csv")


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture(scope="module")
def dask_cluster():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0", silence_logs=40
    )
    try:
        yield cluster
    finally:
        cluster.close()


# ---------------------------------------------------------------- parsing
@pytest.mark.parametrize(
    "text, values, scale",
    [
        ("4,6,8", [4, 6, 8], "list"),
        ("8", [8], "list"),
        ("max,'calibrated',\"granular\"", ["max", "calibrated", "granular"], "list"),
        ("true,false", [True, False], "list"),
        ("[-1,1],[-2,2]", [[-1, 1], [-2, 2]], "list"),
        ("0.1, 1e-3", [0.1, 0.001], "list"),
        ("0:9", list(range(10)), "int"),
        ("3:1", [3, 2, 1], "int"),
        ("0:8:2", [0, 2, 4, 6, 8], "int"),
        ("0:1:lin:11", [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0], "lin"),
        ("1e-3:1e-1:log:3", [0.001, 0.01, 0.1], "log"),
        ("2:1000:LOG:2", [2.0, 1000.0], "log"),
    ],
)
def test_parse_values(text, values, scale):
    got, sc = parse_values(text)
    assert got == values
    assert sc == scale


def test_parse_log_range_is_geometric():
    vals, _ = parse_values("1e-3:1e-1:log:5")
    assert vals[0] == 1e-3 and vals[-1] == 1e-1
    ratios = [b / a for a, b in zip(vals, vals[1:])]
    assert all(abs(r - 10**0.5) < 1e-9 for r in ratios)


def test_parse_values_file(tmp_path):
    f = tmp_path / "values.txt"
    f.write_text("# noise levels\n0\n\n3\n9\n")
    p = parse_param(f"noise_level=@{f}")
    assert p.values == (0, 3, 9)
    g = tmp_path / "modes.txt"
    g.write_text("max\ncalibrated\n")
    assert parse_param(f"adc_range_option=@{g}").values == ("max", "calibrated")


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("adc_bits=0.5:4", "A:B:lin:N"),
        ("alpha_error=0:1:lin:0", "positive integer"),
        ("alpha_error=-1:1:log:3", "positive ends"),
        ("adc_bits=1:5:0", "step"),
        ("adc_bits=", "no values"),
        ("adc_bits=4,,8", "empty item"),
        ("adc_bits", "NAME=VALUES"),
        ("noise_level=@/no/such/values.txt", "not found"),
    ],
)
def test_parse_errors(text, fragment):
    with pytest.raises(XbarsimError, match=fragment.replace("(", r"\(")):
        parse_param(text)


def test_grid_order_and_zip():
    a, b = parse_param("adc_bits=4,6"), parse_param("dac_bits=1:3")
    grid = make_points([a, b])
    assert grid == [{"adc_bits": x, "dac_bits": y} for x in (4, 6) for y in (1, 2, 3)]
    c = parse_param("dac_bits=7,8")
    assert make_points([a, c], zip=True) == [{"adc_bits": 4, "dac_bits": 7}, {"adc_bits": 6, "dac_bits": 8}]
    with pytest.raises(SweepError, match="same number of values.*adc_bits has 2, dac_bits has 3"):
        SweepSpec([a, b], zip=True)
    with pytest.raises(SweepError, match="more than once"):
        SweepSpec([a, parse_param("adc_bits=8")])


def test_unknown_parameter_names_get_suggestions():
    with pytest.raises(ConfigError, match=r"adc_bit: unknown parameter \(did you mean 'adc_bits'\?\)"):
        parse_param("adc_bit=4,6")
    with pytest.raises(ConfigError, match=r"did you mean 'noise_level'"):
        parse_param("noise_levle=0:9")
    with pytest.raises(ConfigError, match=r"'dac_bit' is not a per-layer parameter \(did you mean 'dac_bits'\?\)"):
        parse_param("layers.conv1.dac_bit=4")
    with pytest.raises(ConfigError, match="--seed"):
        parse_param("seed=1,2")
    # every schema key is sweepable, per-layer keys and witin keys included
    assert parse_param("layers.conv1.adc_bits=4,8").name == "layers.conv1.adc_bits"
    assert parse_param("noise_level=0:9").values == tuple(range(10))
    assert parse_param("On_off_ratio=10,100").values == (10, 100)


def test_every_point_validated_before_running(tmp_path):
    base = load_config(BASE)
    spec = SweepSpec([parse_param("adc_bits=4,8"), parse_param("Nslices=1,2")])
    with pytest.raises(ConfigError) as exc:
        resolve_points(base, spec, seed=0)
    msg = str(exc.value)
    assert "sweep point 1 of 4 (adc_bits=4, Nslices=2)" in msg and "weight_bits" in msg
    assert "1 more invalid point(s): 3" in msg

    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=r"sweep point 2 of 3 \(adc_bits=40\).*adc_bits = 40"):
        run_sweep(BASE, ["adc_bits=4,8,40"], workers=1, out=out, runner=failing_runner)
    assert not out.exists()
    # per-layer keys are validated too
    with pytest.raises(ConfigError, match=r"sweep point 1 of 2 \(layers.conv1.noise_level=12\)"):
        run_sweep(BASE, ["layers.conv1.noise_level=3,12"], workers=1, out=out, runner=failing_runner)
    assert not out.exists()


def test_cli_errors_are_one_line(tmp_path):
    cfg = tmp_path / "base.toml"
    cfg.write_text('model_name = "digits_cnn"\nntest = 50\nNruns = 2\n')
    out = tmp_path / "out"
    r = CliRunner().invoke(cli, ["sweep", str(cfg), "-p", "adc_bit=4,6", "--out", str(out)])
    assert r.exit_code == 2
    assert r.output.strip().splitlines() == ["xbarsim: error: --param adc_bit: unknown parameter (did you mean 'adc_bits'?)"]
    r = CliRunner().invoke(cli, ["sweep", str(cfg), "-p", "adc_bits=4,6,99", "--out", str(out)])
    assert r.exit_code == 2
    assert "sweep point 2 of 3 (adc_bits=99)" in r.output and len(r.output.strip().splitlines()) == 1
    r = CliRunner().invoke(cli, ["sweep", str(cfg), "-p", "adc_bits=4", "--set", "ntset=5", "--out", str(out)])
    assert r.exit_code == 2 and "did you mean 'ntest'" in r.output
    assert not out.exists()


def test_unreachable_scheduler(tmp_path):
    out = tmp_path / "out"
    address = f"tcp://127.0.0.1:{_closed_port()}"
    t0 = time.perf_counter()
    with pytest.raises(SweepError, match="cannot (reach|connect to) (the|a) Dask scheduler.*nothing was run or written"):
        run_sweep(BASE, ["adc_bits=4,8"], scheduler=address, scheduler_timeout=1.5, out=out, runner=failing_runner)
    assert time.perf_counter() - t0 < 30
    assert not out.exists()
    r = CliRunner().invoke(
        cli, ["sweep", str(REPO / "sweeps" / "adc_dac_grid.toml"), "-p", "adc_bits=4,8", "--scheduler", address,
              "--scheduler-timeout", "1", "--out", str(out)]
    )
    assert r.exit_code == 2 and "Dask scheduler" in r.output and "nothing was run or written" in r.output
    assert not out.exists()


# ---------------------------------------------------------------- the output folder
def test_outputs(tmp_path):
    res = run_sweep(BASE, ["alpha_error=1e-3:1e-1:log:3"], workers=1, out=tmp_path, seed=5, runner=fake_runner,
                    overrides={"error_model": "alpha"})
    folder = tmp_path / "sweep_alpha_error"
    assert res.folder == folder
    df = _frame(folder)
    assert list(df.columns) == ["point", "alpha_error", "run", "seed", "accuracy", "top5", "ideal_accuracy",
                                "seconds_per_image"]
    assert list(df["point"]) == [0, 0, 1, 1, 2, 2]
    assert list(df["seed"]) == [5, 6] * 3  # every point: base seed 5, run i -> 5 + i
    assert list(df["alpha_error"]) == [0.001, 0.001, 0.01, 0.01, 0.1, 0.1]
    summ = pd.read_csv(folder / "summary.csv")
    assert list(summ.columns[:7]) == ["point", "alpha_error", "runs", "mean", "std", "min", "max"]
    g = df.groupby("point")["accuracy"]
    assert summ["mean"].tolist() == pytest.approx(g.mean().tolist())
    assert summ["std"].tolist() == pytest.approx(g.std().tolist())
    assert (folder / "accuracy.png").stat().st_size > 1000 and res.plot == folder / "accuracy.png"
    desc = json.loads((folder / "sweep.json").read_text())
    assert desc["Nruns"] == 2 and desc["seed"] == 5 and desc["zip"] is False
    assert desc["params"][0]["name"] == "alpha_error" and desc["base_config"]["error_model"] == "alpha"
    # every point's resolved config, loadable as is
    for k, a in enumerate([0.001, 0.01, 0.1]):
        cfg = load_config(folder / "points" / f"{k}.toml")
        assert cfg.alpha_error == a and cfg.seed == 5 and cfg.error_model == "alpha" and cfg.ntest == 50


def test_plots_for_two_three_and_many_params(tmp_path):
    res = run_sweep(BASE, ["adc_bits=4,8", "dac_bits=4,8"], workers=1, out=tmp_path, runner=fake_runner)
    assert res.plot is not None and res.plot.exists()
    res = run_sweep(BASE, ["adc_bits=4,8", "dac_bits=4,8", "noise_level=0,9"], workers=1, out=tmp_path,
                    runner=fake_runner)
    assert res.plot is not None and res.plot.exists()
    res = run_sweep({**BASE, "Nruns": 1}, ["adc_bits=4,8", "dac_bits=4,8", "noise_level=0:4", "weight_bits=6:8"],
                    workers=1, out=tmp_path, runner=fake_runner)
    assert res.plot is None and "no plot" in res.note and len(res.summary) == 60
    res = run_sweep(BASE, ["adc_bits=4,6,8", "dac_bits=8,6,4"], zip=True, workers=1, out=tmp_path, name="zipped",
                    runner=fake_runner)
    assert res.plot is not None and len(res.summary) == 3
    assert res.summary[["adc_bits", "dac_bits"]].values.tolist() == [[4, 8], [6, 6], [8, 4]]


def test_per_layer_and_witin_parameters(tmp_path):
    res = run_sweep(BASE, ["layers.conv1.adc_bits=4,6", "noise_level=0,9"], workers=1, out=tmp_path,
                    runner=fake_runner)
    df = res.results
    assert "layers.conv1.adc_bits" in df.columns and set(df["noise_level"]) == {0, 9}
    cfg = load_config(res.folder / "points" / "3.toml")
    assert cfg.layers["conv1"].adc_bits == 6 and cfg.noise_level == 9


def test_refuses_existing_results(tmp_path):
    run_sweep(BASE, ["adc_bits=4,8"], workers=1, out=tmp_path, name="s", runner=fake_runner)
    csv = tmp_path / "s" / "results.csv"
    before = csv.read_bytes()
    # another base config, with or without --resume: refused, file untouched
    for resume in (False, True):
        with pytest.raises(SweepError, match=r"different sweep \(ntest: 50 -> 60\).*nothing was overwritten"):
            run_sweep({**BASE, "ntest": 60}, ["adc_bits=4,8"], workers=1, out=tmp_path, name="s", resume=resume,
                      runner=failing_runner)
    with pytest.raises(SweepError, match="different sweep.*values of adc_bits"):
        run_sweep(BASE, ["adc_bits=4,6"], workers=1, out=tmp_path, name="s", runner=failing_runner)
    with pytest.raises(SweepError, match="different sweep.*seed"):
        run_sweep(BASE, ["adc_bits=4,8"], workers=1, out=tmp_path, name="s", seed=1, runner=failing_runner)
    # the same sweep again without --resume: refused too (never overwritten)
    with pytest.raises(SweepError, match=r"already holds results of this sweep \(2 of 2 points.*--resume"):
        run_sweep(BASE, ["adc_bits=4,8"], workers=1, out=tmp_path, name="s", runner=failing_runner)
    # a results file of unknown origin
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "results.csv").write_text("point,run\n0,0\n")
    with pytest.raises(SweepError, match="unknown sweep"):
        run_sweep(BASE, ["adc_bits=4,8"], workers=1, out=tmp_path, name="t", runner=failing_runner)
    assert csv.read_bytes() == before
    # the CLI says the same in one line
    cfg = tmp_path / "base.toml"
    cfg.write_text('model_name = "digits_cnn"\ntask = "digits"\nntest = 70\nNruns = 2\n')
    r = CliRunner().invoke(cli, ["sweep", str(cfg), "-p", "adc_bits=4,8", "--out", str(tmp_path), "--name", "s"])
    assert r.exit_code == 2 and "different sweep" in r.output and len(r.output.strip().splitlines()) == 1
    assert csv.read_bytes() == before
    # resuming a complete sweep runs nothing and rebuilds the summary
    res = run_sweep(BASE, ["adc_bits=4,8"], workers=1, out=tmp_path, name="s", resume=True, runner=failing_runner)
    assert res.resumed_points == 2 and csv.read_bytes() == before


def test_resume_after_interrupt(tmp_path):
    params = ["adc_bits=4,6,8", "dac_bits=4,8"]
    ref = run_sweep(BASE, params, workers=1, out=tmp_path / "ref", runner=fake_runner)
    ref_csv = (ref.folder / "results.csv").read_text()

    _CALLS.update(n=0, limit=2 * 3 + 2)  # Ctrl-C during the 2nd run of point 3 (after 3 complete points + 1 run)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(BASE, params, workers=1, out=tmp_path / "b", runner=interrupting_runner)
    folder = tmp_path / "b" / ref.folder.name
    df = _frame(folder)
    assert sorted(set(df["point"])) == [0, 1, 2] and len(df) == 6  # only complete points were written
    assert not (folder / "summary.csv").exists()

    # a crash in the middle of a write leaves a half line: it is dropped on resume
    with open(folder / "results.csv", "a") as f:
        f.write("3,6,4,0,0,0.8")
    with pytest.raises(SweepError, match="--resume"):
        run_sweep(BASE, params, workers=1, out=tmp_path / "b", runner=fake_runner)

    calls = []

    def counting(config, *, runs=None, progress=False):
        calls.append((config.adc_bits, config.dac_bits, tuple(runs)))
        return fake_runner(config, runs=runs)

    res = run_sweep(BASE, params, workers=1, out=tmp_path / "b", resume=True, runner=counting)
    assert res.resumed_points == 3
    assert sorted(calls) == [(6, 8, (0,)), (6, 8, (1,)), (8, 4, (0,)), (8, 4, (1,)), (8, 8, (0,)), (8, 8, (1,))]
    assert (folder / "results.csv").read_text() == ref_csv  # every point exactly once, same rows
    assert pd.read_csv(folder / "summary.csv").equals(pd.read_csv(ref.folder / "summary.csv"))


def test_resume_reruns_incomplete_points(tmp_path):
    params = ["adc_bits=4:7"]
    base = {**BASE, "Nruns": 3}
    ref = run_sweep(base, params, workers=1, out=tmp_path / "ref", runner=fake_runner)
    ref_csv = (ref.folder / "results.csv").read_text()
    folder = tmp_path / "b" / ref.folder.name
    run_sweep(base, params, workers=1, out=tmp_path / "b", runner=fake_runner)
    # leave point 1 with one run missing and point 3 absent, rows in another order
    lines = ref_csv.splitlines(keepends=True)
    header, rows = lines[0], lines[1:]
    kept = [r for r in rows if not r.startswith(("3,",)) and not r.startswith("1,5,2,")]
    (folder / "results.csv").write_text(header + "".join(reversed(kept)))
    res = run_sweep(base, params, workers=2, out=tmp_path / "b", resume=True, runner=fake_runner)
    assert res.resumed_points == 2
    assert (folder / "results.csv").read_text() == ref_csv


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_killed_sweep_resumes(tmp_path, sig):
    """Kill (or Ctrl-C) a CLI sweep in the middle; --resume completes it, equal to an uninterrupted sweep."""
    cfg = tmp_path / "base.toml"
    cfg.write_text('model_name = "digits_cnn"\ntask = "digits"\nntest = 50\nNruns = 2\n')
    args = ["sweep", str(cfg), "-p", "adc_bits=1:10", "--out", str(tmp_path / "out"), "-j", "1", "--no-plot"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from simulator.cli import main; main()", *args, "--runner", "test_sweep:slow_fake_runner"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    csv = tmp_path / "out" / "base_adc_bits" / "results.csv"
    deadline = time.time() + 60
    try:
        while time.time() < deadline:
            if csv.exists() and len(csv.read_text().splitlines()) >= 1 + 2 * 3:
                break
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.05)
        proc.send_signal(sig)
    finally:
        proc.wait(30)
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and b"--resume" in proc.stderr.read()
    assert not (csv.parent / ".lock").exists() or sig == signal.SIGKILL
    done = set(_frame(csv.parent)["point"])
    assert 3 <= len(done) < 10
    r = CliRunner().invoke(cli, [*args, "--runner", "test_sweep:fake_runner", "--resume", "--no-progress"])
    assert r.exit_code == 0, r.output
    ref = run_sweep(str(cfg), ["adc_bits=1:10"], workers=1, out=tmp_path / "ref", runner=fake_runner)
    assert csv.read_text() == (ref.folder / "results.csv").read_text()


# ---------------------------------------------------------------- executors
def _comparable(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=["seconds_per_image"]).reset_index(drop=True)


def test_identical_results_on_every_executor_fake(tmp_path, dask_cluster):
    params, base = ["adc_bits=4,8", "alpha_error=0,0.1"], {**BASE, "error_model": "alpha"}
    a = run_sweep(base, params, workers=1, out=tmp_path / "a", runner=fake_runner).results
    b = run_sweep(base, params, workers=2, out=tmp_path / "b", runner=fake_runner).results
    c = run_sweep(base, params, scheduler=dask_cluster.scheduler_address, out=tmp_path / "c", runner=fake_runner).results
    assert len(a) == 8
    pd.testing.assert_frame_equal(_comparable(a), _comparable(b))
    pd.testing.assert_frame_equal(_comparable(a), _comparable(c))


def test_cli_sweep_with_fake_runner(tmp_path):
    out = tmp_path / "out"
    r = CliRunner().invoke(
        cli, ["sweep", str(REPO / "sweeps" / "adc_dac_grid.toml"), "-p", "adc_bits=4,8", "-p", "dac_bits=4,8",
              "--set", "ntest=50", "--out", str(out), "-j", "1", "--runner", "test_sweep:fake_runner", "--seed", "3"]
    )
    assert r.exit_code == 0, r.output
    folder = out / "adc_dac_grid_adc_bits_dac_bits"
    for f in ("results.csv", "summary.csv", "sweep.json", "accuracy.png", "points/3.toml"):
        assert (folder / f).exists(), f
    df = _frame(folder)
    assert len(df) == 4 and set(df["seed"]) == {3}
    assert "mean" in r.output and "plot:" in r.output


# ---------------------------------------------------------------- with the real runner
@pytest.fixture(scope="module")
def real_runner():
    import simulator.runner as runner_module

    return runner_module.run


def test_real_runner_identical_on_every_executor(tmp_path, real_runner, dask_cluster):
    # programming error and read noise (keyed streams: the same numbers in any process)
    base = {**BASE, "ntest": 50, "Nruns": 2, "weight_bits": 8, "error_model": "alpha", "proportional_error": True,
            "noise_model": "alpha", "alpha_noise": 0.05}
    params = ["alpha_error=0,0.1"]
    a = run_sweep(base, params, workers=1, out=tmp_path / "a")
    b = run_sweep(base, params, workers=2, out=tmp_path / "b")
    c = run_sweep(base, params, scheduler=dask_cluster.scheduler_address, out=tmp_path / "c")
    assert len(a.results) == 4 and list(a.results["seed"]) == [0, 1, 0, 1]
    assert a.results["accuracy"].between(0, 1).all()
    pd.testing.assert_frame_equal(_comparable(a.results), _comparable(b.results))
    pd.testing.assert_frame_equal(_comparable(a.results), _comparable(c.results))
    # a sweep point equals a plain run of that point's config
    cfg = load_config(a.folder / "points" / "1.toml")
    direct = real_runner(cfg).to_frame()
    assert direct["accuracy"].tolist() == a.results[a.results["point"] == 1]["accuracy"].tolist()


def test_real_runner_cli(tmp_path, real_runner):
    out = tmp_path / "out"
    r = CliRunner().invoke(
        cli, ["sweep", str(REPO / "sweeps" / "alpha_error.toml"), "-p", "alpha_error=0:0.1:lin:2",
              "--set", "ntest=50", "--set", "Nruns=1", "--out", str(out), "-j", "1", "--no-progress"]
    )
    assert r.exit_code == 0, r.output
    df = _frame(out / "alpha_error")
    assert df["alpha_error"].tolist() == [0.0, 0.1] and df["ideal_accuracy"].notna().all()


def model_missing_runner(config, *, runs=None, progress=False):
    from simulator.errors import ModelError

    if config.noise_level == 5:
        raise ModelError("bundled model 'witin_digits' is not installed")
    return fake_runner(config, runs=runs, progress=progress)


@pytest.mark.parametrize("workers", [1, 2])
def test_user_error_in_a_run_names_the_point(tmp_path, workers):
    from simulator.errors import ModelError

    with pytest.raises(ModelError, match=r"^sweep point 2 \(noise_level=5\), run \d: bundled model 'witin_digits'"):
        run_sweep(BASE, ["noise_level=1,3,5,7"], workers=workers, out=tmp_path, runner=model_missing_runner)
    df = _frame(tmp_path / "sweep_noise_level")
    assert 2 not in set(df["point"]) and {0, 1} <= set(df["point"])  # finished points are kept


def test_user_error_on_dask_names_the_point(tmp_path, dask_cluster):
    from simulator.errors import ModelError

    with pytest.raises(ModelError, match=r"^sweep point 2 \(noise_level=5\), run \d: bundled model"):
        run_sweep(BASE, ["noise_level=1,3,5,7"], scheduler=dask_cluster.scheduler_address, out=tmp_path,
                  runner=model_missing_runner)
    csv = tmp_path / "sweep_noise_level" / "results.csv"
    assert not csv.exists() or 2 not in set(pd.read_csv(csv)["point"])  # Dask may start any task first


def test_folder_lock(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    lock = folder / ".lock"
    # held by a live process on this host: refused, nothing written
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getppid()}))
    with pytest.raises(SweepError, match="in use by another sweep"):
        run_sweep(BASE, ["adc_bits=4,8"], workers=1, out=tmp_path, name="s", runner=failing_runner)
    assert sorted(p.name for p in folder.iterdir()) == [".lock"]
    # left by a driver that died: taken over, and released at the end
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid}))
    res = run_sweep(BASE, ["adc_bits=4,8"], workers=1, out=tmp_path, name="s", runner=fake_runner)
    assert len(res.results) == 4 and not lock.exists()
    info = json.loads((folder / "sweep.json").read_text())["info"]
    res = run_sweep(BASE, ["adc_bits=4,8"], workers=1, out=tmp_path, name="s", runner=fake_runner, resume=True)
    info2 = json.loads((folder / "sweep.json").read_text())["info"]
    assert info2["started"] == info["started"] and len(info2["resumed"]) == 1


def pid_runner(config, *, runs=None, progress=False):
    """Writes this worker's pid to $XBARSIM_TEST_PIDS/<pid>, then runs slowly (for the process-handling tests)."""
    folder = os.environ["XBARSIM_TEST_PIDS"]
    open(os.path.join(folder, str(os.getpid())), "w").close()
    time.sleep(0.5 if config.to_dict().get("adc_bits") == 4 else 30)
    return fake_runner(config, runs=runs, progress=progress)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped) counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return True


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM", "SIGKILL"])
def test_killing_the_main_process_ends_the_workers_and_keeps_points(tmp_path, how):
    """SIGINT/SIGTERM to the main process alone (started with SIGINT ignored, as a background job of a
    non-interactive shell is) or SIGKILL: the pool workers end, the finished point stays in results.csv."""
    import signal
    import subprocess
    import sys

    pids = tmp_path / "pids"
    pids.mkdir()
    cfg = tmp_path / "c.toml"
    cfg.write_text("ntest = 5\n")
    env = dict(os.environ, XBARSIM_TEST_PIDS=str(pids), PYTHONPATH=os.path.dirname(__file__) + os.pathsep
               + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-c", "from simulator.cli import main; main()", "sweep", str(cfg), "-p", "adc_bits=4,6,8",
           "-j", "2", "--out", str(tmp_path), "--name", "k", "--no-plot", "--no-progress",
           "--runner", "test_sweep:pid_runner"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    results = tmp_path / "k" / "results.csv"
    deadline = time.time() + 60
    while time.time() < deadline and not (results.exists() and len(results.read_text().splitlines()) > 1
                                          and len(os.listdir(pids)) >= 2):
        time.sleep(0.1)
    workers = [int(p) for p in os.listdir(pids)]
    assert len(workers) >= 2 and results.exists(), proc.communicate(timeout=5)
    proc.send_signal(getattr(signal, how))
    proc.wait(timeout=30)
    t_end = time.time() + 10
    while time.time() < t_end and any(_alive(p) for p in workers):
        time.sleep(0.1)
    assert not [p for p in workers if _alive(p)]
    assert "adc_bits" in results.read_text() and len(results.read_text().splitlines()) >= 2
