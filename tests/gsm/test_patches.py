"""Tests of the natural image patches (momentssn.gsm.patches), on files the tests write."""

import pickle

import numpy as np
import pytest
from PIL import Image

from momentssn.gsm.patches import (
    cifar10_images,
    cut_patches,
    folder_images,
    normalize_patches,
    patch_set,
    patches_from_path,
    skimage_images,
    to_grey,
)


def _images(n=4, shape=(20, 24), seed=0):
    rng = np.random.default_rng(seed)
    return {f"im{i}": rng.uniform(size=shape) for i in range(n)}


def test_cut_patches_are_windows_of_the_image():
    im = np.arange(12 * 10, dtype=float).reshape(12, 10)
    p = cut_patches(im, 4, 50, np.random.default_rng(0))
    assert p.shape == (50, 16)
    for row in p:  # each patch is a contiguous 4 x 4 window: find its corner and compare
        r, c = divmod(int(row[0]), 10)
        np.testing.assert_array_equal(row.reshape(4, 4), im[r : r + 4, c : c + 4])
    with pytest.raises(ValueError, match="size"):
        cut_patches(im, 11, 1, np.random.default_rng(0))


def test_normalize_and_split_by_source():
    images = _images(6)
    images["flat"] = np.full((20, 24), 0.5)
    ps = patch_set(images, size=5, n_per_image=30, held_out=0.34, seed=3, unit_variance=True)
    assert ps.train.shape[1] == 25 and ps.size == 5
    for x in (ps.train, ps.test):
        np.testing.assert_allclose(x.mean(1), 0.0, atol=1e-12)
        np.testing.assert_allclose(x.std(1), 1.0, atol=1e-12)
    pooled = patch_set(images, size=5, n_per_image=30, held_out=0.34, seed=3)  # the default
    np.testing.assert_allclose(pooled.train.mean(1), 0.0, atol=1e-12)
    np.testing.assert_allclose(np.mean(pooled.train**2), 1.0, rtol=1e-12)
    assert pooled.train.std(1).std() > 0.01  # contrasts kept
    # same patches, another scale: each row is a multiple of the unit-variance one
    np.testing.assert_allclose(pooled.test / pooled.test.std(1, keepdims=True), ps.test, atol=1e-10)
    assert set(ps.train_sources).isdisjoint(ps.test_sources)
    assert len(ps.test_sources) == 2 and len(ps.train_sources) + len(ps.test_sources) == 7
    assert ps.train.shape[0] + ps.test.shape[0] == 7 * 30 - 30  # the flat image's patches are dropped
    again = patch_set(images, size=5, n_per_image=30, held_out=0.34, seed=3, unit_variance=True)
    np.testing.assert_array_equal(again.train, ps.train)  # seeded
    other = patch_set(images, size=5, n_per_image=30, held_out=0.34, seed=4, unit_variance=True)
    assert other.train.shape != ps.train.shape or not np.array_equal(other.train, ps.train)
    # the held-out patches are cut from the held-out images only: each matches a window there
    windows = np.stack([im[r : r + 5, c : c + 5].ravel() for k in ps.test_sources
                        for im in [images[k]] for r in range(16) for c in range(20)])
    windows = normalize_patches(windows)
    for row in ps.test[:5]:
        assert np.abs(windows - row).max(1).min() < 1e-12
    with pytest.raises(ValueError, match="held_out"):
        patch_set(images, held_out=1.0)
    with pytest.raises(ValueError, match="at least 2 source images"):
        patch_set({"a": images["im0"]})


def test_cifar10_batches(tmp_path):
    rng = np.random.default_rng(1)
    data = rng.integers(0, 256, size=(3, 3072), dtype=np.uint8)
    for name in ("data_batch_1", "test_batch"):
        with open(tmp_path / name, "wb") as fh:
            pickle.dump({b"data": data, b"labels": [0, 1, 2]}, fh)
    ims = cifar10_images(tmp_path)
    assert len(ims) == 6 and ims["data_batch_1:2"].shape == (32, 32)
    rgb = data[2].reshape(3, 32, 32).transpose(1, 2, 0) / 255.0  # channel-major rows
    np.testing.assert_allclose(ims["data_batch_1:2"], rgb @ [0.2125, 0.7154, 0.0721], atol=1e-12)
    ps = patches_from_path(tmp_path, size=8, n_per_image=2, held_out=0.5, seed=0)
    assert ps.train.shape == (6, 64) and ps.test.shape == (6, 64)
    assert patches_from_path(tmp_path / "data_batch_1", size=8, held_out=0.34).train.shape == (2, 64)
    (tmp_path / "junk").write_bytes(pickle.dumps({b"x": 1}))
    with pytest.raises(ValueError, match="not a CIFAR-10 python batch"):
        cifar10_images(tmp_path / "junk")


def test_folder_of_images(tmp_path):
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    Image.fromarray(rgb[..., 0]).save(tmp_path / "b.png")
    (tmp_path / "notes.txt").write_text("not an image")
    ims = folder_images(tmp_path)
    assert sorted(ims) == ["a.png", "b.png"]
    np.testing.assert_allclose(ims["a.png"], to_grey(rgb), atol=1e-12)
    np.testing.assert_allclose(ims["b.png"], rgb[..., 0] / 255.0, atol=1e-12)
    ps = patches_from_path(tmp_path, size=6, n_per_image=10, held_out=0.5)
    assert ps.train.shape == (10, 36) and ps.test.shape == (10, 36)
    with pytest.raises(FileNotFoundError, match="path not found"):
        patches_from_path(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        folder_images(tmp_path / "empty")


def test_skimage_photographs_load_offline():
    ims = skimage_images(("camera", "chelsea"))
    assert ims["camera"].shape == (512, 512) and ims["chelsea"].shape == (300, 451)
    assert 0.0 <= ims["chelsea"].min() and ims["chelsea"].max() <= 1.0
    with pytest.raises(ValueError, match="no image 'nope'"):
        skimage_images(("nope",))
