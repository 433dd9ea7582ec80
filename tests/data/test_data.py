import hashlib
import pickle

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF

from resnet_nb.data import augment, cifar10
from resnet_nb.data.cifar10 import DataError


def test_fixture_loads_through_real_loader_as_synthetic(fake_cifar):
    with pytest.raises(DataError, match="md5 mismatch.*synthetic resnet-nb fixture.*--allow-noncanonical"):
        cifar10.load_cifar10(fake_cifar)
    ds = cifar10.load_cifar10(fake_cifar, allow_noncanonical=True)
    assert ds.train_x.shape == (500, 3, 32, 32) and ds.train_x.dtype == torch.uint8
    assert ds.test_x.shape == (100, 3, 32, 32)
    assert ds.train_y.dtype == torch.int64 and ds.train_y.bincount().tolist() == [50] * 10
    assert ds.provenance == "synthetic" and not ds.canonical
    assert len(ds.fingerprint) == 64
    assert set(ds.md5_mismatches) == set(cifar10.BATCH_MD5)


def test_fixture_pickle_layout_matches_original(fake_cifar):
    """Keys load as bytes with encoding='bytes' and as str with 'latin1' (torchvision's way)."""
    path = fake_cifar / "cifar-10-batches-py" / "data_batch_1"
    with open(path, "rb") as f:
        d = pickle.load(f, encoding="bytes")
    assert {b"batch_label", b"labels", b"data", b"filenames"} <= set(d)
    with open(path, "rb") as f:
        d2 = pickle.load(f, encoding="latin1")
    assert isinstance(d2["data"], np.ndarray) and d2["data"].shape[1] == 3072
    ds = cifar10.load_cifar10(fake_cifar, allow_noncanonical=True)
    img0 = d2["data"][0].reshape(3, 32, 32)
    assert np.array_equal(ds.train_x[0].numpy(), img0)


def test_fingerprint_is_deterministic_and_content_sensitive(tmp_path):
    a = cifar10.write_fake_cifar10(tmp_path / "a", 50, 10, seed=1).parent
    b = cifar10.write_fake_cifar10(tmp_path / "b", 50, 10, seed=1).parent
    c = cifar10.write_fake_cifar10(tmp_path / "c", 50, 10, seed=2).parent
    fa, fb, fc = (cifar10.load_cifar10(r, allow_noncanonical=True).fingerprint for r in (a, b, c))
    assert fa == fb != fc


def _canonicalise(monkeypatch, batches_dir):
    """Pretend this folder's md5 sums are the published ones."""
    sums = {n: hashlib.md5((batches_dir / n).read_bytes()).hexdigest() for n in cifar10.BATCH_MD5}
    monkeypatch.setattr(cifar10, "BATCH_MD5", sums)


def test_md5_match_is_canonical_mismatch_refused_unless_opted_in(tmp_path, monkeypatch):
    d = cifar10.write_fake_cifar10(tmp_path, 50, 10, seed=3)
    _canonicalise(monkeypatch, d)
    ds = cifar10.load_cifar10(tmp_path)
    assert ds.provenance == "canonical" and ds.canonical
    # flip one pixel of test_batch: md5 differs (and no longer matches the synthetic
    # sidecar) -> refused, and named not canonical rather than synthetic
    with open(d / "test_batch", "rb") as f:
        obj = pickle.load(f, encoding="bytes")
    obj[b"data"][0, 0] ^= 1
    obj[b"batch_label"] = b"testing batch 1 of 1"
    with open(d / "test_batch", "wb") as f:
        pickle.dump(obj, f, protocol=2)
    with pytest.raises(DataError, match=r"md5 mismatch .* test_batch.*not the canonical CIFAR-10") as e:
        cifar10.load_cifar10(tmp_path)
    assert cifar10.SYNTHETIC_HINT in str(e.value)
    ds = cifar10.load_cifar10(tmp_path, allow_noncanonical=True)
    assert ds.provenance == "noncanonical" and ds.md5_mismatches == ("test_batch",)


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_batch_names_the_file(tmp_path, damage):
    d = cifar10.write_fake_cifar10(tmp_path, 50, 10)
    p = d / "data_batch_3"
    raw = p.read_bytes()
    p.write_bytes(raw[: len(raw) // 2] if damage == "truncate" else b"not a pickle" * 10)
    with pytest.raises(DataError, match=r"data_batch_3 is truncated or corrupt"):
        cifar10.load_cifar10(tmp_path, allow_noncanonical=True)


def test_missing_batch_file_names_it(tmp_path):
    d = cifar10.write_fake_cifar10(tmp_path, 50, 10)
    (d / "data_batch_5").unlink()
    with pytest.raises(DataError, match="data_batch_5 is missing"):
        cifar10.load_cifar10(tmp_path, allow_noncanonical=True)


def test_missing_data_without_network_gives_clear_error(tmp_path):
    root = tmp_path / "nowhere"
    with pytest.raises(DataError) as e:
        cifar10.load_cifar10(root)   # downloads from the closed loopback port set in conftest
    msg = str(e.value)
    assert cifar10.CIFAR10_URL in msg and cifar10.CIFAR10_ARCHIVE_MD5 in msg
    assert str(root / cifar10.CIFAR10_ARCHIVE) in msg and "place it" in msg
    assert not (root / cifar10.CIFAR10_ARCHIVE).exists()


def test_archive_is_found_and_extracted(tmp_path, monkeypatch):
    import tarfile
    src = tmp_path / "src"
    d = cifar10.write_fake_cifar10(src, 50, 10)
    root = tmp_path / "root"
    root.mkdir()
    archive = root / cifar10.CIFAR10_ARCHIVE
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(d, arcname=cifar10.BATCHES_DIR)
    with pytest.raises(DataError, match="md5 .* expected c58f30108f718f92721af3b95e74349a"):
        cifar10.load_cifar10(root, allow_noncanonical=True)
    monkeypatch.setattr(cifar10, "CIFAR10_ARCHIVE_MD5", hashlib.md5(archive.read_bytes()).hexdigest())
    ds = cifar10.load_cifar10(root, allow_noncanonical=True)
    assert (root / cifar10.BATCHES_DIR / "test_batch").is_file() and ds.test_y.numel() == 10


def test_env_var_sets_default_root(tmp_path, monkeypatch):
    cifar10.write_fake_cifar10(tmp_path, 50, 10)
    monkeypatch.setenv("RESNET_NB_DATA", str(tmp_path))
    assert cifar10.default_root() == tmp_path
    assert cifar10.load_cifar10(allow_noncanonical=True).train_y.numel() == 50


def test_messages_say_how_to_run_without_cifar10(tmp_path):
    """Run All of a notebook on its defaults needs CIFAR-10: the error names the way out."""
    hint = 'use --dataset synthetic (in a notebook: set dataset = "synthetic" in the parameters cell)'
    assert hint in cifar10.SYNTHETIC_HINT
    with pytest.raises(DataError) as e:
        cifar10.load_dataset("cifar10", tmp_path / "nowhere", download=False)
    assert hint in str(e.value) and "resnet-nb data download" in str(e.value)
    with pytest.raises(DataError) as e:
        cifar10.load_cifar10(tmp_path / "nowhere")           # a download was tried and failed
    assert hint in str(e.value) and "resnet-nb data download" not in str(e.value)


def _rewrite_batch(batches_dir, name, **changes):
    with open(batches_dir / name, "rb") as f:
        obj = pickle.load(f, encoding="bytes")
    obj.update({k.encode(): v for k, v in changes.items()})
    with open(batches_dir / name, "wb") as f:
        pickle.dump(obj, f, protocol=2)


@pytest.mark.parametrize("pixels", [
    np.full((5, 3072), 300, np.int16),        # would wrap to 44
    np.full((5, 3072), 0.5, np.float32),
    np.full((5, 3072), 7, np.int64),          # in range, still not uint8: refused, not cast
    [[0] * 3072] * 5,                         # a list, not an array
], ids=["int16-300", "float32", "int64-in-range", "list"])
def test_non_uint8_pixels_are_refused_not_wrapped(tmp_path, pixels):
    d = cifar10.write_fake_cifar10(tmp_path, 25, 10)
    _rewrite_batch(d, "data_batch_2", data=pixels, labels=[0] * 5)
    with pytest.raises(DataError, match=r"data_batch_2 is not a CIFAR-10 batch \(pixels are \w+, expected uint8"):
        cifar10.load_cifar10(tmp_path, allow_noncanonical=True)


@pytest.mark.parametrize("labels, match", [
    ([0, 1, 2, 3, 12], r"labels span 0..12, expected 0..9"),
    ([0.0, 1.5, 2.0, 3.0, 4.0], r"labels are float64, expected integers 0..9"),
    ([0, 1, 2], r"do not form N x 3072 images"),
])
def test_bad_labels_are_refused(tmp_path, labels, match):
    d = cifar10.write_fake_cifar10(tmp_path, 25, 10)
    _rewrite_batch(d, "data_batch_1", labels=labels)
    with pytest.raises(DataError, match=r"data_batch_1 is not a CIFAR-10 batch.*" + match):
        cifar10.load_cifar10(tmp_path, allow_noncanonical=True)


def test_batch_that_is_not_a_dict_is_refused(tmp_path):
    d = cifar10.write_fake_cifar10(tmp_path, 25, 10)
    with open(d / "test_batch", "wb") as f:
        pickle.dump([1, 2, 3], f, protocol=2)
    with pytest.raises(DataError, match=r"test_batch is not a CIFAR-10 batch \(expected a dict"):
        cifar10.load_cifar10(tmp_path, allow_noncanonical=True)


# ------------------------------------------------------------------ data command line

def test_data_cli_takes_data_root_and_the_hidden_deprecated_root(fake_cifar, capsys):
    from resnet_nb.cli import main
    with pytest.raises(SystemExit):
        main(["data", "--help"])
    help_text = capsys.readouterr().out
    assert "--data-root" in help_text and "--root" not in help_text.replace("--data-root", "")
    assert main(["data", "info", "--data-root", str(fake_cifar), "--allow-noncanonical"]) == 0
    out, err = capsys.readouterr()
    assert "provenance:  synthetic" in out and "deprecated" not in err
    assert main(["data", "info", "--root", str(fake_cifar), "--allow-noncanonical"]) == 0
    out, err = capsys.readouterr()
    assert "provenance:  synthetic" in out and "--root is deprecated; use --data-root" in err


@pytest.mark.parametrize("action", ["info", "verify"])
def test_data_cli_without_data_points_to_data_download(tmp_path, capsys, action):
    from resnet_nb.cli import main
    root = tmp_path / "none"
    assert main(["data", action, "--data-root", str(root)]) == 2
    err = capsys.readouterr().err
    assert f"resnet-nb data download --data-root {root}" in err
    assert cifar10.CIFAR10_URL in err and "Traceback" not in err


# ------------------------------------------------------------------ download timeout

def test_download_times_out_on_a_server_that_never_answers(tmp_path, monkeypatch):
    import socket
    import time
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        server.bind(("127.0.0.1", 0))
        server.listen(4)             # the kernel completes the connection; nobody ever answers
        port = server.getsockname()[1]
        monkeypatch.setenv("RESNET_NB_CIFAR_URL", f"http://127.0.0.1:{port}/cifar-10-python.tar.gz")
        monkeypatch.setenv("RESNET_NB_DOWNLOAD_TIMEOUT", "0.5")
        before = socket.getdefaulttimeout()
        t0 = time.monotonic()
        with pytest.raises(DataError) as e:
            cifar10.load_cifar10(tmp_path / "root")
        elapsed = time.monotonic() - t0
    finally:
        server.close()
    msg = str(e.value)
    assert elapsed < 10, elapsed
    assert f"no answer from http://127.0.0.1:{port}/" in msg and "within 0.5 s" in msg
    assert "RESNET_NB_DOWNLOAD_TIMEOUT" in msg and "place it at" in msg and cifar10.CIFAR10_ARCHIVE_MD5 in msg
    assert socket.getdefaulttimeout() == before      # the global default is restored


@pytest.mark.parametrize("value", ["0", "-3", "soon", "inf", "nan"])
def test_download_timeout_must_be_a_positive_number(tmp_path, monkeypatch, value):
    monkeypatch.setenv("RESNET_NB_DOWNLOAD_TIMEOUT", value)
    with pytest.raises(DataError, match=f"RESNET_NB_DOWNLOAD_TIMEOUT must be a positive number of seconds; got '{value}'"):
        cifar10.download_cifar10(tmp_path)


# ------------------------------------------------------------------ augmentation

def test_crop_flip_equals_torchvision():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=g)
    top = torch.randint(0, 9, (16,), generator=g)
    left = torch.randint(0, 9, (16,), generator=g)
    flip = torch.rand(16, generator=g) < 0.5
    out = augment.crop_flip(x, top, left, flip)
    for i in range(16):
        ref = TF.crop(TF.pad(x[i], [4]), int(top[i]), int(left[i]), 32, 32)
        if flip[i]:
            ref = TF.hflip(ref)
        assert torch.equal(out[i], ref), i
    # the corners of a (0, 0) crop are padding zeros
    z = augment.crop_flip(x[:1], torch.tensor([0]), torch.tensor([0]), torch.tensor([False]))
    assert torch.count_nonzero(z[0, :, :4, :4]) == 0


def test_random_crop_flip_distribution_and_seed():
    # every row holds x-coordinates + 1, so padding (0) is distinguishable from pixels
    x = (torch.arange(32, dtype=torch.float32) + 1).expand(4000, 1, 32, 32).contiguous()
    a = augment.random_crop_flip(x, torch.Generator().manual_seed(1))
    b = augment.random_crop_flip(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    row = a[:, 0, 16]
    flipped = row[:, 10] > row[:, 11]
    assert abs(flipped.float().mean().item() - 0.5) < 0.05
    # out[10] = left + 7 unflipped, left + 18 flipped (see crop_flip)
    left = torch.where(flipped, row[:, 10] - 18, row[:, 10] - 7).long()
    assert left.min() == 0 and left.max() == 8
    freq = torch.bincount(left, minlength=9).float() / 4000
    assert torch.all((freq - 1 / 9).abs() < 0.03)


def test_augment_epoch_is_crop_flip_of_a_seeded_permutation_in_any_chunks():
    n = 37
    x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    y = torch.arange(n) * 3                                   # labels that name their image
    xe, ye = augment.augment_epoch(x, y, torch.Generator().manual_seed(5))
    assert xe.shape == x.shape and xe.dtype == torch.uint8 and ye.shape == (n,)
    # the documented draws: a permutation, then top, left and flip of all n images
    g = torch.Generator().manual_seed(5)
    order = torch.randperm(n, generator=g)
    top, left = torch.randint(0, 9, (n,), generator=g), torch.randint(0, 9, (n,), generator=g)
    flip = torch.rand(n, generator=g) < 0.5
    assert 0 < int(flip.sum()) < n and len(set(top.tolist())) > 1          # the draws vary
    assert sorted((ye // 3).tolist()) == list(range(n)) and torch.equal(ye, y[order])
    for k in range(n):
        one = augment.crop_flip(x[order[k]][None], top[k:k + 1], left[k:k + 1], flip[k:k + 1])
        assert torch.equal(xe[k], one[0]), k
    for chunk in (1, 5, n, 1000):                             # chunked == one shot
        xc, yc = augment.augment_epoch(x, y, torch.Generator().manual_seed(5), chunk=chunk)
        assert torch.equal(xc, xe) and torch.equal(yc, ye), chunk
    xo, yo = augment.augment_epoch(x, y, torch.Generator().manual_seed(6))
    assert not torch.equal(yo, ye) and not torch.equal(xo, xe)             # another seed, another epoch
    with pytest.raises(ValueError, match="chunk must be positive"):
        augment.augment_epoch(x, y, chunk=0)


def test_channel_stats_and_normalize():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (200, 3, 32, 32), dtype=torch.uint8, generator=g)
    mean, std = augment.channel_stats(x)
    z = augment.normalize(x, mean, std)
    assert z.dtype == torch.float32
    assert torch.allclose(z.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(z.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-3)
    ref = TF.normalize(x.float() / 255, mean.tolist(), std.tolist())
    assert torch.allclose(z, ref, atol=1e-5)
    pm = augment.pixel_mean(x)
    assert pm.shape == (3, 32, 32)
    zp = augment.normalize(x, pm)
    assert torch.allclose(zp.mean(dim=0), torch.zeros(3, 32, 32), atol=1e-5)


def test_train_val_split():
    tr, va = cifar10.train_val_split(50_000, 5_000, seed=0)
    assert len(tr) == 45_000 and len(va) == 5_000
    assert len(set(tr.tolist()) | set(va.tolist())) == 50_000


def test_load_dataset_synthetic_writes_and_labels(tmp_path, monkeypatch):
    monkeypatch.setenv("RESNET_NB_SYNTHETIC", str(tmp_path))
    ds = cifar10.load_dataset("synthetic")
    assert ds.provenance == "synthetic" and ds.train_y.numel() == cifar10.SYNTHETIC_SIZE[0]
    assert (cifar10.synthetic_root() / "cifar-10-batches-py" / "test_batch").is_file()
    with pytest.raises(ValueError, match="dataset must be 'cifar10' or 'synthetic'"):
        cifar10.load_dataset("imagenet")
