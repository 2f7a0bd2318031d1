"""Per-layer error budget (``xbarsim diagnose``) of the CIFAR-10 ResNet-20 at 8-bit W/DAC/ADC.

    python benchmarks/diagnose_resnet20.py [--ntest 200] [--out /tmp/diagnose_resnet20] [--workers 2]

Model: ``resnet20v1_cifar10.h5`` from the shared CrossSim models (Keras .h5,
read by xbarsim's importer), BALANCED one-sided cells, On/Off 100,
NrowsMax 1152, 8-bit weights, DACs and ADCs, digital bias, the shipped
calibrated ranges: per-layer input limits (``input_limits_ResNet20.npy``,
``dac_limits_file``) and ADC limits (``adc_limits_ResNet20_balanced.npy``,
``calibration_file``, CrossSim 3's normalized units) -- the setting "a" of
``run_benchmarks.py``.

Inputs: CIFAR-10 images are not available here, so the test set is a seeded
synthetic one in the model's input scaling: random but fixed 32x32 crops of
scikit-learn's two sample photographs (``natural_crops``, seed 0) scaled to
[0, 1] with their per-pixel mean subtracted, as the Keras ResNets were
trained. Their labels are the floating-point model's own predictions, so
"accuracy" here is the top-1 agreement with floating point (the
floating-point accuracy is 100 % by construction). The inputs are written to
``<out>/synthetic_inputs.npz`` and read through the ``npz`` task.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import simulator  # noqa: E402
from resnet_calibrated_agreement import natural_crops  # noqa: E402
from run_benchmarks import RESNET_DIR  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ntest", type=int, default=200)
    ap.add_argument("--out", default="/tmp/diagnose_resnet20")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--samples", type=int, default=2048)
    args = ap.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    net = simulator.load_model(str(RESNET_DIR / "resnet20v1_cifar10.h5"))
    x = natural_crops(args.ntest, seed=0)
    x = (x - x.mean(axis=0)).astype(np.float32)
    ref = simulator.Simulation(net, {}, seed=0)
    labels = np.concatenate([ref.ideal_forward(x[s : s + 100]).argmax(-1) for s in range(0, len(x), 100)])
    data = out / "synthetic_inputs.npz"
    np.savez(data, x_test=x, y_test=labels.astype(np.int64), num_classes=np.array(10))

    cfg = dict(
        model_name=str(RESNET_DIR / "resnet20v1_cifar10.h5"), task="npz", dataset_path=str(data), ntest=args.ntest,
        ntest_batch=50, seed=0, style="BALANCED", balanced_style="one_sided", weight_bits=8, dac_bits=8, adc_bits=8,
        NrowsMax=1152, On_off_ratio=100, digital_bias=True,
        dac_limits_file=str(RESNET_DIR / "input_limits_ResNet20.npy"),
        adc_range_option="calibrated", calibration_file=str(RESNET_DIR / "adc_limits_ResNet20_balanced.npy"),
    )
    report = simulator.diagnose(cfg, net, samples=args.samples, workers=args.workers, out=out / "report",
                                progress=True)
    print(report.table())
    print(f"files: {out / 'report'}")


if __name__ == "__main__":
    main()
