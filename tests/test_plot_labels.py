"""What the plots say: a hint on flat zero device curves, no "±0.000" at one run, zipped parameters shown,
the witin reference named as the float network (not the noise-free chip)."""
from __future__ import annotations

import pandas as pd
from click.testing import CliRunner

from devices.base import DeviceParams
from devices.plotting import plot_device
from simulator.cli import cli
from simulator.sweep.report import WITIN_FLOAT_LABEL, summary_figure
from simulator.sweep.spec import SweepSpec, parse_param


def _texts(fig) -> list[str]:
    out = []
    for ax in fig.axes:
        out += [t.get_text() for t in ax.texts]
        out += [t.get_text() for t in ax.get_xticklabels()] + [ax.get_xlabel(), ax.get_title()]
        legend = ax.get_legend()
        if legend is not None:
            out += [t.get_text() for t in legend.get_texts()]
    if fig._suptitle is not None:
        out.append(fig._suptitle.get_text())
    return out


def _summary(rows):
    return pd.DataFrame(rows)


def test_device_plot_of_zero_sigma_says_why(tmp_path):
    notes: list[str] = []
    plot_device("alpha", DeviceParams(), tmp_path / "a.png", notes=notes)
    assert len(notes) == 2 and "alpha_error = 0" in notes[0] and "--alpha-error" in notes[0]
    assert "alpha_noise = 0" in notes[1]
    notes = []
    plot_device("alpha", DeviceParams(alpha_error=0.05, alpha_noise=0.01), tmp_path / "b.png", notes=notes)
    assert notes == []  # real curves: no hint
    res = CliRunner().invoke(cli, ["device", "plot", "alpha", "--out", str(tmp_path / "c.png")])
    assert res.exit_code == 0 and "note: programming error: sigma = 0 at every G because alpha_error = 0" in res.output


def test_heat_map_at_one_run_shows_no_spread():
    spec = SweepSpec([parse_param("adc_bits=[4, 8]"), parse_param("dac_bits=[4, 8]")])
    rows = [dict(point=i, adc_bits=a, dac_bits=d, runs=1, mean=0.5 + 0.1 * i, std=0.0, min=0, max=1)
            for i, (a, d) in enumerate([(4, 4), (4, 8), (8, 4), (8, 8)])]
    one = _texts(summary_figure(_summary(rows), spec, title="t", nruns=1))
    cells = [t for t in one if t.startswith("0.")]
    assert cells == ["0.500", "0.600", "0.700", "0.800"] and not any("±" in t for t in one)
    assert any("1 run per point: no spread" in t for t in one)
    for r in rows:
        r.update(runs=3, std=0.01)
    three = _texts(summary_figure(_summary(rows), spec, title="t", nruns=3))
    assert "0.500\n±0.010" in three and any("3 runs per point, error bars: std" in t for t in three)


def test_zip_plot_shows_every_parameter():
    spec = SweepSpec([parse_param("alpha_error=[0.01, 0.03, 0.1]"), parse_param("alpha_noise=[0.01, 0.02, 0.05]")],
                     zip=True)
    rows = [dict(point=i, alpha_error=e, alpha_noise=n, runs=2, mean=0.9, std=0.01, min=0.89, max=0.91,
                 ideal_accuracy=0.95) for i, (e, n) in enumerate([(0.01, 0.01), (0.03, 0.02), (0.1, 0.05)])]
    fig = summary_figure(_summary(rows), spec, title="t", nruns=2)
    top = [ax for ax in fig.axes[0].child_axes]
    assert len(top) == 1
    labels = [t.get_text() for t in top[0].get_xticklabels()]
    assert labels == ["0.01", "0.02", "0.05"]
    assert "alpha_noise" in top[0].get_xlabel() and fig.axes[0].get_xlabel() == "alpha_error"


def test_witin_reference_is_the_float_network_not_the_noise_free_chip():
    spec = SweepSpec([parse_param("noise_level=[0, 5]")])
    rows = [dict(point=i, noise_level=lv, runs=2, mean=m, std=0.01, min=m, max=m, ideal_accuracy=0.97)
            for i, (lv, m) in enumerate([(0, 0.96), (5, 0.9)])]
    witin = _texts(summary_figure(_summary(rows), spec, title="t", nruns=2, witin=True))
    assert WITIN_FLOAT_LABEL in witin and "noise-free chip" in witin and "ideal (floating point)" not in witin
    plain = _texts(summary_figure(_summary(rows), spec, title="t", nruns=2))
    assert "ideal (floating point)" in plain and "noise-free chip" not in plain


def test_witin_run_table_names_its_reference():
    import simulator

    res = simulator.run({"model_name": "witin_digits", "witin_mode": "chip", "ntest": 20, "seed": 0})
    assert "(float network: no chip quantization, no noise)" in res.table()
    plain = simulator.run({"model_name": "digits_cnn", "ntest": 20, "seed": 0})
    assert "(floating point, no analog effects)" in plain.table()
