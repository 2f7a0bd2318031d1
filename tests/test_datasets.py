"""Dataset loading (manual 4.1): every format written here in miniature, selection, pre-processing, errors."""
from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
import pytest

from simulator.errors import DataError
from simulator.io.datasets import load_dataset

RNG = np.random.default_rng(0)


# ------------------------------------------------------------------ writers
def write_idx(path, arr, gz=False):
    arr = np.asarray(arr, dtype=np.uint8)
    head = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    data = head + arr.tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


def make_mnist(folder, n_train=40, n_test=25, gz=False, size=6):
    folder.mkdir(parents=True, exist_ok=True)
    # every image unique: the first pixel holds an id (train ids even, test ids odd)
    xtr = RNG.integers(0, 256, (n_train, size, size), dtype=np.uint8)
    xte = RNG.integers(0, 256, (n_test, size, size), dtype=np.uint8)
    xtr[:, 0, 0] = (np.arange(n_train) * 2) % 256
    xte[:, 0, 0] = (np.arange(n_test) * 2 + 1) % 256
    ytr = RNG.integers(0, 10, n_train)
    yte = RNG.integers(0, 10, n_test)
    write_idx(folder / "train-images-idx3-ubyte", xtr, gz)
    write_idx(folder / "train-labels-idx1-ubyte", ytr, gz)
    write_idx(folder / "t10k-images-idx3-ubyte", xte, gz)
    write_idx(folder / "t10k-labels-idx1-ubyte", yte, gz)
    return (xtr, ytr), (xte, yte)


def _cifar_rows(n, start_id):
    data = RNG.integers(0, 256, (n, 3072), dtype=np.uint8)
    ids = np.arange(start_id, start_id + n)
    data[:, 0] = ids % 256
    data[:, 1] = ids // 256
    return data


def make_cifar10(folder, per_batch=12, n_test=15):
    folder.mkdir(parents=True, exist_ok=True)
    train = []
    for b in range(1, 6):
        data = _cifar_rows(per_batch, 1000 + b * 100)
        labels = RNG.integers(0, 10, per_batch).tolist()
        with open(folder / f"data_batch_{b}", "wb") as f:
            pickle.dump({b"batch_label": b"training batch", b"data": data, b"labels": labels}, f, protocol=2)
        train.append((data, labels))
    data = _cifar_rows(n_test, 0)
    labels = RNG.integers(0, 10, n_test).tolist()
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": data, b"labels": labels}, f, protocol=2)
    xtr = np.concatenate([d for d, _ in train])
    ytr = np.concatenate([l for _, l in train])
    return (xtr, ytr), (data, np.array(labels))


def cifar_image(rows):
    return rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def _one_line(exc):
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


# ------------------------------------------------------------------ MNIST / Fashion
@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx(tmp_path, gz):
    (xtr, ytr), (xte, yte) = make_mnist(tmp_path / "m", gz=gz)
    cfg = {"task": "mnist", "dataset_path": str(tmp_path / "m")}
    ds = load_dataset(cfg)
    assert ds.n == 25 and ds.input_layout == "NHWC" and ds.num_classes == 10 and ds.input_shape == (6, 6, 1)
    x, y = ds.load_all()
    assert x.dtype == np.float32 and x.shape == (25, 6, 6, 1)
    np.testing.assert_array_equal(x[..., 0], xte.astype(np.float32))  # "none": stored 0..255 values
    np.testing.assert_array_equal(y, yte)
    # ntest / nstart
    ds = load_dataset({**cfg, "ntest": 7, "nstart": 10, "ntest_batch": 3})
    batches = list(ds.iter_batches())
    assert [len(b[1]) for b in batches] == [3, 3, 1]
    x = np.concatenate([b[0] for b in batches])
    np.testing.assert_array_equal(x[..., 0], xte[10:17])
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), yte[10:17])


def test_normalization(tmp_path):
    (_, _), (xte, _) = make_mnist(tmp_path / "m")
    base = {"task": "mnist", "dataset_path": str(tmp_path / "m")}
    x_u = load_dataset({**base, "dataset_normalization": "unsigned_8b"}).load_all()[0][..., 0]
    x_s = load_dataset({**base, "dataset_normalization": "signed_8b"}).load_all()[0][..., 0]
    np.testing.assert_allclose(x_u, xte / 255.0, rtol=1e-6)
    np.testing.assert_allclose(x_s, xte / 127.5 - 1.0, rtol=1e-6, atol=1e-6)
    assert x_u.min() >= 0 and x_u.max() <= 1 and x_s.min() >= -1 and x_s.max() <= 1
    with pytest.raises(DataError, match="dataset_normalization"):
        load_dataset({**base, "dataset_normalization": "float"})


def test_subtract_pixel_mean_uses_training_set(tmp_path):
    (xtr, _), (xte, _) = make_mnist(tmp_path / "m")
    cfg = {"task": "mnist", "dataset_path": str(tmp_path / "m"), "dataset_normalization": "unsigned_8b",
           "subtract_pixel_mean": True}
    ds = load_dataset(cfg)
    mean = (xtr / 255.0).mean(axis=0)
    np.testing.assert_allclose(ds.pixel_mean[..., 0], mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ds.load_all()[0][..., 0], xte / 255.0 - mean, rtol=1e-5, atol=1e-6)


def test_fashion_via_env_var(tmp_path, monkeypatch):
    (_, _), (xte, yte) = make_mnist(tmp_path / "root" / "fashion", gz=True)
    monkeypatch.setenv("XBARSIM_DATA", str(tmp_path / "root"))
    ds = load_dataset({"task": "fashion", "ntest": 5})
    np.testing.assert_array_equal(ds.load_all()[1], yte[:5])
    # dataset_path may also name the root that holds the task's subfolder
    monkeypatch.delenv("XBARSIM_DATA")
    ds = load_dataset({"task": "fashion", "dataset_path": str(tmp_path / "root")})
    assert ds.n == 25


def test_random_sampling_is_seeded_and_bounded(tmp_path):
    make_mnist(tmp_path / "m", n_test=30)
    cfg = {"task": "mnist", "dataset_path": str(tmp_path / "m"), "ntest": 12, "ntest_batch": 5,
           "randomSampling": True, "seed": 3, "nstart": 25}
    a, b = load_dataset(cfg), load_dataset(cfg)
    c = load_dataset({**cfg, "seed": 4})
    np.testing.assert_array_equal(a.indices, b.indices)
    assert not np.array_equal(a.indices, c.indices)
    assert len(set(a.indices.tolist())) == 12 and a.indices.max() < 30
    assert a.indices.min() < 25  # nstart ignored when sampling randomly
    batches = list(a.iter_batches())
    assert [len(y) for _, y in batches] == [5, 5, 2]
    # images come in the sampled order (the id pixel tells which image it is)
    ids = np.concatenate([x[:, 0, 0, 0] for x, _ in batches])
    np.testing.assert_array_equal(ids, (a.indices * 2 + 1) % 256)
    # two passes give the same batches (the runner iterates once per run)
    again = np.concatenate([x[:, 0, 0, 0] for x, _ in a.iter_batches()])
    np.testing.assert_array_equal(ids, again)


def test_only_one_batch_is_read_at_a_time(tmp_path, monkeypatch):
    make_mnist(tmp_path / "m", n_test=25)
    ds = load_dataset({"task": "mnist", "dataset_path": str(tmp_path / "m"), "ntest_batch": 4})
    sizes = []
    real = ds.source.read
    monkeypatch.setattr(ds.source, "read", lambda idx: sizes.append(len(idx)) or real(idx))
    assert sum(len(y) for _, y in ds.iter_batches()) == 25
    assert max(sizes) <= 4 and sum(sizes) == 25


def test_calibration_split_is_disjoint_from_test(tmp_path):
    make_mnist(tmp_path / "m", n_train=40, n_test=25)
    cfg = {"task": "mnist", "dataset_path": str(tmp_path / "m"), "ntest": 25, "calibration_ntest": 30,
           "randomSampling": True, "seed": 0}
    test_ids = set(load_dataset(cfg).load_all()[0][:, 0, 0, 0].astype(int).tolist())
    cal = load_dataset(cfg, split="calibration")
    assert cal.n == 30 and cal.split == "calibration"
    cal_ids = set(cal.load_all()[0][:, 0, 0, 0].astype(int).tolist())
    assert all(i % 2 == 1 for i in test_ids) and all(i % 2 == 0 for i in cal_ids)
    assert not test_ids & cal_ids


# ------------------------------------------------------------------ CIFAR
def test_cifar10_pickles(tmp_path):
    (xtr, ytr), (xte, yte) = make_cifar10(tmp_path / "c" / "cifar-10-batches-py")
    cfg = {"task": "cifar10", "dataset_path": str(tmp_path / "c"), "ntest_batch": 4}
    ds = load_dataset(cfg)
    assert ds.n == 15 and ds.input_shape == (32, 32, 3) and ds.num_classes == 10
    x, y = ds.load_all()
    np.testing.assert_array_equal(x, cifar_image(xte).astype(np.float32))
    np.testing.assert_array_equal(y, yte)
    assert all(len(b[1]) <= 4 for b in ds.iter_batches())
    # calibration: from the five training batches, crossing file boundaries
    cal = load_dataset({**cfg, "calibration_ntest": 30}, split="calibration")
    xc, yc = cal.load_all()
    np.testing.assert_array_equal(xc, cifar_image(xtr[:30]).astype(np.float32))
    np.testing.assert_array_equal(yc, ytr[:30])
    test_ids = set((x[:, 0, 0, 0] + 256 * x[:, 0, 1, 0]).astype(int).tolist())
    cal_ids = set((xc[:, 0, 0, 0] + 256 * xc[:, 0, 1, 0]).astype(int).tolist())
    assert not test_ids & cal_ids


def test_cifar10_subtract_pixel_mean(tmp_path):
    (xtr, _), (xte, _) = make_cifar10(tmp_path / "c")
    cfg = {"task": "cifar10", "dataset_path": str(tmp_path / "c"), "subtract_pixel_mean": True,
           "dataset_normalization": "unsigned_8b", "ntest": 5, "nstart": 3}
    ds = load_dataset(cfg)
    mean = (cifar_image(xtr) / 255.0).mean(axis=0)
    np.testing.assert_allclose(ds.pixel_mean, mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ds.load_all()[0], cifar_image(xte[3:8]) / 255.0 - mean, rtol=1e-5, atol=1e-6)


def test_cifar100_fine_labels(tmp_path):
    folder = tmp_path / "cifar100" / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, n in (("train", 20), ("test", 10)):
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": _cifar_rows(n, 0), b"fine_labels": list(range(90, 90 + n)) if name == "test" else [5] * n,
                         b"coarse_labels": [1] * n}, f)
    ds = load_dataset({"task": "cifar100", "dataset_path": str(tmp_path / "cifar100")})
    assert ds.num_classes == 100
    np.testing.assert_array_equal(ds.load_all()[1], np.arange(90, 100))
    assert load_dataset({"task": "cifar100", "dataset_path": str(tmp_path / "cifar100")}, split="calibration").n == 20


def test_cifar_pickle_refuses_code(tmp_path):
    folder = tmp_path / "c"
    make_cifar10(folder)

    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": Evil(), b"labels": []}, f)
    with pytest.raises(DataError, match="refusing"):
        load_dataset({"task": "cifar10", "dataset_path": str(folder)})


# ------------------------------------------------------------------ ImageNet (.npy) / npz
def test_imagenet_npy_memory_mapped(tmp_path):
    folder = tmp_path / "imagenet"
    folder.mkdir()
    x = RNG.random((9, 5, 5, 3)).astype(np.float32)
    xc = RNG.random((4, 5, 5, 3)).astype(np.float32)
    np.save(folder / "x_val.npy", x)
    np.save(folder / "y_val.npy", np.arange(9).reshape(9, 1) * 100)
    np.save(folder / "x_calib.npy", xc)
    np.save(folder / "y_calib.npy", np.arange(4))
    ds = load_dataset({"task": "imagenet", "dataset_path": str(folder), "ntest": 4, "nstart": 2,
                       "subtract_pixel_mean": True})
    assert ds.num_classes == 1000
    assert isinstance(ds.source._x(), np.memmap)
    xs, ys = ds.load_all()
    np.testing.assert_allclose(xs, x[2:6] - xc.mean(axis=0), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(ys, [200, 300, 400, 500])
    cal = load_dataset({"task": "imagenet", "dataset_path": str(folder)}, split="calibration")
    np.testing.assert_array_equal(cal.load_all()[0], xc)


@pytest.mark.parametrize("compressed", [False, True])
def test_npz(tmp_path, compressed):
    x = RNG.random((11, 3, 4, 4)).astype(np.float32)
    xtr = RNG.random((6, 3, 4, 4)).astype(np.float32)
    save = np.savez_compressed if compressed else np.savez
    path = tmp_path / "data.npz"
    save(path, x_test=x, y_test=np.arange(11) % 7, x_train=xtr, y_train=np.arange(6) % 7, input_layout="NCHW")
    ds = load_dataset({"task": "npz", "dataset_path": str(path), "ntest_batch": 4, "subtract_pixel_mean": True})
    assert ds.n == 11 and ds.num_classes == 7 and ds.input_layout == "NCHW" and ds.input_shape == (3, 4, 4)
    if not compressed:
        assert isinstance(ds.source._x(), np.memmap)
    xs = np.concatenate([b[0] for b in ds.iter_batches()])
    np.testing.assert_allclose(xs, x - xtr.mean(axis=0), rtol=1e-5, atol=1e-6)
    # layout conversion on request
    xb, _ = next(ds.iter_batches(layout="NHWC"))
    assert xb.shape == (4, 4, 4, 3)
    # calibration falls back to x_train; a folder holding one .npz works as dataset_path
    cal = load_dataset({"task": "npz", "dataset_path": str(tmp_path)}, split="calibration")
    np.testing.assert_array_equal(cal.load_all()[0], xtr)


def test_npz_one_hot_labels_and_num_classes(tmp_path):
    y = np.eye(5)[[0, 3, 4, 1]]
    np.savez(tmp_path / "d.npz", x_test=np.zeros((4, 3)), y_test=y, num_classes=12)
    ds = load_dataset({"task": "npz", "dataset_path": str(tmp_path / "d.npz")})
    np.testing.assert_array_equal(ds.load_all()[1], [0, 3, 4, 1])
    assert ds.num_classes == 12 and ds.input_shape == (3,)


# ------------------------------------------------------------------ digits (bundled default)
def test_digits_default_and_disjoint_calibration():
    ds = load_dataset({})
    assert ds.task == "digits" and ds.n == 540 and ds.input_shape == (8, 8, 1) and ds.num_classes == 10
    xt, _ = ds.load_all()
    cal = load_dataset({"ntest": 100}, split="calibration")
    xc, _ = cal.load_all()
    assert cal.n == 100
    test_rows = {r.tobytes() for r in xt.reshape(len(xt), -1)}
    from simulator.io.digits import load_digits_split

    xtr, _ = load_digits_split("train")
    # calibration images are training images; none of them is a test image (digits has a few duplicates)
    train_rows = {r.tobytes() for r in xtr.reshape(len(xtr), -1)}
    assert all(r.tobytes() in train_rows for r in xc.reshape(len(xc), -1))
    ds2 = load_dataset({"ntest": 10, "subtract_pixel_mean": True, "ntest_batch": 4})
    np.testing.assert_allclose(ds2.pixel_mean, xtr.mean(axis=0), rtol=1e-5, atol=1e-6)
    assert len(test_rows) > 0


def test_config_object_is_accepted():
    from simulator.config import load_config

    cfg = load_config({"task": "digits", "ntest": 20, "ntest_batch": 8})
    ds = load_dataset(cfg)
    assert ds.n == 20 and [len(y) for _, y in ds.iter_batches()] == [8, 8, 4]


# ------------------------------------------------------------------ errors
def test_no_location(monkeypatch):
    monkeypatch.delenv("XBARSIM_DATA", raising=False)
    with pytest.raises(DataError) as exc:
        load_dataset({"task": "mnist"})
    msg = _one_line(exc)
    assert "XBARSIM_DATA" in msg and "dataset_path" in msg and "t10k-images-idx3-ubyte" in msg


def test_missing_folder_and_files(tmp_path):
    with pytest.raises(DataError) as exc:
        load_dataset({"task": "cifar10", "dataset_path": str(tmp_path / "nope")})
    msg = _one_line(exc)
    assert "does not exist" in msg and "test_batch" in msg and str(tmp_path / "nope") in msg
    (tmp_path / "m").mkdir()
    write_idx(tmp_path / "m" / "t10k-images-idx3-ubyte", np.zeros((3, 4, 4)))
    with pytest.raises(DataError) as exc:
        load_dataset({"task": "mnist", "dataset_path": str(tmp_path / "m")})
    msg = _one_line(exc)
    assert "lacks t10k-labels-idx1-ubyte" in msg and str(tmp_path / "m") in msg
    (tmp_path / "i").mkdir()
    np.save(tmp_path / "i" / "x_val.npy", np.zeros((2, 2, 2, 3)))
    with pytest.raises(DataError, match="lacks y_val.npy"):
        load_dataset({"task": "imagenet", "dataset_path": str(tmp_path / "i")})
    with pytest.raises(DataError, match="lacks data_batch_1"):
        make_cifar10(tmp_path / "c")
        (tmp_path / "c" / "data_batch_1").unlink()
        load_dataset({"task": "cifar10", "dataset_path": str(tmp_path / "c")}, split="calibration")


def test_wrong_length_labels(tmp_path):
    folder = tmp_path / "m"
    make_mnist(folder)
    write_idx(folder / "t10k-labels-idx1-ubyte", np.zeros(24))
    with pytest.raises(DataError) as exc:
        load_dataset({"task": "mnist", "dataset_path": str(folder)})
    assert "24 labels" in _one_line(exc)
    (tmp_path / "i").mkdir()
    np.save(tmp_path / "i" / "x_val.npy", np.zeros((5, 2, 2, 3)))
    np.save(tmp_path / "i" / "y_val.npy", np.zeros(4, int))
    with pytest.raises(DataError) as exc:
        load_dataset({"task": "imagenet", "dataset_path": str(tmp_path / "i")})
    assert "4 labels for 5 images" in _one_line(exc)
    np.savez(tmp_path / "d.npz", x_test=np.zeros((3, 2)), y_test=np.zeros(2, int))
    with pytest.raises(DataError) as exc:
        load_dataset({"task": "npz", "dataset_path": str(tmp_path / "d.npz")})
    assert "2 labels for 3 images" in _one_line(exc)
    c = tmp_path / "c"
    make_cifar10(c)
    with open(c / "test_batch", "wb") as f:
        pickle.dump({b"data": _cifar_rows(4, 0), b"labels": [1, 2, 3]}, f)
    with pytest.raises(DataError) as exc:
        load_dataset({"task": "cifar10", "dataset_path": str(c)})
    assert "3 labels for 4 images" in _one_line(exc)


def test_selection_errors(tmp_path):
    make_mnist(tmp_path / "m", n_test=25)
    cfg = {"task": "mnist", "dataset_path": str(tmp_path / "m")}
    with pytest.raises(DataError, match="exceeds the 25 images"):
        load_dataset({**cfg, "ntest": 20, "nstart": 10})
    with pytest.raises(DataError, match="nstart = 30"):
        load_dataset({**cfg, "nstart": 30})
    with pytest.raises(DataError, match="exceeds the 25 images"):
        load_dataset({**cfg, "ntest": 26, "randomSampling": True})
    with pytest.raises(DataError, match="did you mean 'mnist'"):
        load_dataset({"task": "mnsit"})
    with pytest.raises(DataError, match="split"):
        load_dataset(cfg, split="train")


def test_corrupt_files(tmp_path):
    folder = tmp_path / "m"
    make_mnist(folder)
    (folder / "t10k-images-idx3-ubyte").write_bytes(b"\x12\x34\x56\x78garbage")
    with pytest.raises(DataError) as exc:
        load_dataset({"task": "mnist", "dataset_path": str(folder)})
    assert "not an IDX file" in _one_line(exc)
    make_mnist(folder)
    data = (folder / "t10k-images-idx3-ubyte").read_bytes()
    (folder / "t10k-images-idx3-ubyte").write_bytes(data[:100])
    with pytest.raises(DataError, match="truncated"):
        load_dataset({"task": "mnist", "dataset_path": str(folder)})
    make_mnist(folder)
    write_idx(folder / "t10k-labels-idx1-ubyte", np.full(25, 12))
    with pytest.raises(DataError, match="outside 0..9"):
        load_dataset({"task": "mnist", "dataset_path": str(folder)})
