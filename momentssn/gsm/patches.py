"""Natural image patches: grey, normalized per patch, split into train / held-out by source image.

Sources (each a mapping name -> grey image (H, W), float64 in [0, 1]):

* :func:`skimage_images` -- the embedded default, no download: the natural photographs that
  ship inside scikit-image's wheel (``skimage.data``): astronaut, brick, camera, chelsea,
  coffee, coins, grass, gravel, moon, rocket and the left view of stereo_motorcycle.
* :func:`cifar10_images` -- CIFAR-10 python batches (``data_batch_1`` ... ``test_batch``,
  pickled dicts with ``data`` (n, 3072) uint8, channel-major 32 x 32 RGB), turned grey;
  every image is its own source.
* :func:`folder_images` -- every image file (png, jpg, jpeg, bmp, tif, tiff, gif) in a folder.

:func:`patch_set` cuts ``n_per_image`` random ``size x size`` patches from every source,
drops near-flat ones (raw standard deviation below ``min_std``) and normalizes each patch::

    x = (p - mean(p)) / s        (P = size^2 pixels, flattened row-major)

with s = the pooled pixel standard deviation of the mean-free training patches (one number,
the default: patches keep their relative contrasts, which the GSM's z models), or s = std(p)
with ``unit_variance=True`` (every |x|^2 = P).  The second removes the contrast variations
z is there for: on 8 x 8 patches with M = 4 learned filters the ML fit then sends the Gamma
shape alpha to infinity (z fixed, a plain Gaussian).  The first keeps them.

:func:`patch_set` then assigns whole source images (never single patches) to the held-out set, chosen by a
seeded permutation, so held-out numbers measure generalization to unseen photographs.
:func:`default_patches` and :func:`patches_from_path` put the pieces together.

Grey = 0.2125 R + 0.7154 G + 0.0721 B (ITU-R 709 luma, as ``skimage.color.rgb2gray``).
"""

from __future__ import annotations

import os
import pickle
from typing import Dict, Mapping, NamedTuple, Tuple, Union

import numpy as np

__all__ = [
    "PatchSet",
    "to_grey",
    "skimage_images",
    "cifar10_images",
    "folder_images",
    "cut_patches",
    "normalize_patches",
    "patch_set",
    "default_patches",
    "patches_from_path",
    "SKIMAGE_PHOTOS",
]

#: The photographs of ``skimage.data`` used by default (all ship in its wheel: no download).
SKIMAGE_PHOTOS = (
    "astronaut",
    "brick",
    "camera",
    "chelsea",
    "coffee",
    "coins",
    "grass",
    "gravel",
    "moon",
    "rocket",
    "stereo_motorcycle",
)
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif")
_LUMA = np.array([0.2125, 0.7154, 0.0721])

PathLike = Union[str, os.PathLike]


class PatchSet(NamedTuple):
    """Normalized patches, split by source image.

    train: (n_train, P) float64, every row zero mean (P = size^2, row-major); pixel variance 1
        over the set (or every row unit variance with ``unit_variance=True``).
    test: (n_test, P) float64, the held-out patches (from other source images), same scale s.
    size: the patch side (pixels).
    scale: s, the divisor applied to the mean-free raw patches (NaN with ``unit_variance``).
    train_sources, test_sources: names of the source images in each part.
    """

    train: np.ndarray
    test: np.ndarray
    size: int
    train_sources: Tuple[str, ...]
    test_sources: Tuple[str, ...]
    scale: float = float("nan")


def to_grey(image) -> np.ndarray:
    """(H, W) grey float64 in [0, 1] from (H, W), (H, W, 3) or (H, W, 4) (alpha ignored);
    integer images are divided by their type's maximum (255 for uint8)."""
    im = np.asarray(image)
    if im.ndim == 3 and im.shape[-1] in (3, 4):
        scale = float(np.iinfo(im.dtype).max) if np.issubdtype(im.dtype, np.integer) else 1.0
        return (im[..., :3].astype(np.float64) / scale) @ _LUMA
    if im.ndim != 2:
        raise ValueError(f"image must be (H, W), (H, W, 3) or (H, W, 4), got shape {im.shape}")
    if np.issubdtype(im.dtype, np.integer):
        return im.astype(np.float64) / float(np.iinfo(im.dtype).max)
    return im.astype(np.float64)


def skimage_images(names=SKIMAGE_PHOTOS) -> Dict[str, np.ndarray]:
    """The embedded photographs of ``skimage.data`` (grey, float64 in [0, 1]) by name."""
    import skimage.data  # optional heavy dependency, needed only for the embedded default

    out = {}
    for name in names:
        if not hasattr(skimage.data, name):
            raise ValueError(f"names: skimage.data has no image {name!r}")
        im = getattr(skimage.data, name)()
        out[name] = to_grey(im[0] if isinstance(im, tuple) else im)  # stereo pair: left view
    return out


def cifar10_images(path: PathLike, max_images: int | None = None) -> Dict[str, np.ndarray]:
    """Grey 32 x 32 images from CIFAR-10 python batches: a batch file, or a folder holding
    ``data_batch_*`` / ``test_batch``.  Names are ``<batch>:<index>``."""
    path = os.fspath(path)
    files = [path]
    if os.path.isdir(path):
        files = sorted(
            os.path.join(path, f) for f in os.listdir(path) if f.startswith(("data_batch", "test_batch"))
        )
        if not files:
            raise ValueError(f"path: no CIFAR-10 batches (data_batch_*, test_batch) in {path}")
    out: Dict[str, np.ndarray] = {}
    for file in files:
        with open(file, "rb") as fh:
            try:
                batch = pickle.load(fh, encoding="bytes")
            except Exception as err:  # noqa: BLE001 - any unpickling failure means "not a batch"
                raise ValueError(f"path: {file} is not a CIFAR-10 python batch ({err})") from err
        data = batch.get(b"data", batch.get("data")) if isinstance(batch, dict) else None
        if data is None or np.ndim(data) != 2 or np.shape(data)[1] != 3072:
            raise ValueError(f"path: {file} is not a CIFAR-10 python batch (no (n, 3072) 'data')")
        rgb = np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        base = os.path.basename(file)
        for i, im in enumerate(rgb):
            out[f"{base}:{i}"] = to_grey(im)
            if max_images is not None and len(out) >= max_images:
                return out
    return out


def folder_images(path: PathLike) -> Dict[str, np.ndarray]:
    """Every image file in the folder ``path`` (not recursive), grey, by file name."""
    from PIL import Image  # Pillow comes with matplotlib; only this loader needs it

    path = os.fspath(path)
    if not os.path.isdir(path):
        raise ValueError(f"path: {path} is not a folder")
    out = {}
    for f in sorted(os.listdir(path)):
        if f.lower().endswith(_IMAGE_SUFFIXES):
            with Image.open(os.path.join(path, f)) as im:
                out[f] = to_grey(np.asarray(im.convert("RGB") if im.mode not in ("L", "RGB") else im))
    if not out:
        raise ValueError(f"path: no image files ({', '.join(_IMAGE_SUFFIXES)}) in {path}")
    return out


def cut_patches(image: np.ndarray, size: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, size^2) patches of the (H, W) image at uniformly random positions (row-major)."""
    H, W = image.shape
    if size > min(H, W):
        raise ValueError(f"size: patches of {size} px do not fit in an image of {H} x {W}")
    r = rng.integers(0, H - size + 1, n)
    c = rng.integers(0, W - size + 1, n)
    idx = np.arange(size)
    return image[(r[:, None] + idx)[:, :, None], (c[:, None] + idx)[:, None, :]].reshape(n, -1)


def normalize_patches(patches: np.ndarray, min_std: float = 0.01, unit_variance: bool = True) -> np.ndarray:
    """Rows (n, P) -> zero mean (and unit variance if ``unit_variance``); rows with
    std < ``min_std`` are dropped."""
    p = np.asarray(patches, dtype=np.float64)
    p = p - p.mean(axis=1, keepdims=True)
    sd = p.std(axis=1)
    keep = sd >= min_std
    return p[keep] / sd[keep, None] if unit_variance else p[keep]


def patch_set(
    images: Mapping[str, np.ndarray],
    size: int = 16,
    n_per_image: int = 2000,
    held_out: float = 0.25,
    seed: int = 0,
    min_std: float = 0.01,
    unit_variance: bool = False,
) -> PatchSet:
    """Normalized patches from named grey images, split by source image.

    Args:
        images: name -> (H, W) grey image (float, [0, 1]).
        size: patch side (px).  n_per_image: patches cut from each image (before dropping
            near-flat ones).  held_out: fraction of the images (at least one; at least one
            is kept for training) whose patches form the held-out set.
        seed: the positions and the split.  min_std: raw std below which a patch is dropped.
        unit_variance: divide each patch by its own std instead of the pooled training std.
    """
    names = sorted(images)
    if len(names) < 2:
        raise ValueError(f"images: need at least 2 source images to split by image, got {len(names)}")
    if int(size) < 2 or int(n_per_image) < 1:
        raise ValueError(f"size must be >= 2 and n_per_image >= 1, got {size}, {n_per_image}")
    if not 0.0 < held_out < 1.0:
        raise ValueError(f"held_out must be a fraction in (0, 1), got {held_out}")
    rng = np.random.default_rng(seed)
    order = [names[i] for i in rng.permutation(len(names))]
    n_test = min(max(1, int(round(held_out * len(names)))), len(names) - 1)
    test_names, train_names = tuple(sorted(order[:n_test])), tuple(sorted(order[n_test:]))

    def part(which):
        cut = [cut_patches(images[k], int(size), int(n_per_image), rng) for k in which]
        return normalize_patches(np.concatenate(cut, axis=0), min_std, unit_variance)

    train, test = part(train_names), part(test_names)
    for label, arr in (("training", train), ("held-out", test)):
        if arr.shape[0] == 0:
            raise ValueError(f"min_std: every {label} patch is flatter than min_std = {min_std}")
    scale = float("nan")
    if not unit_variance:
        scale = float(np.sqrt(np.mean(train**2)))
        train, test = train / scale, test / scale
    return PatchSet(train, test, int(size), train_names, test_names, scale)


def default_patches(
    size: int = 16, n_per_image: int = 2000, held_out: float = 0.25, seed: int = 0, unit_variance: bool = False
) -> PatchSet:
    """The embedded default: :func:`patch_set` of :func:`skimage_images` (11 photographs;
    held-out 0.25: 3 of them)."""
    return patch_set(skimage_images(), size, n_per_image, held_out, seed, unit_variance=unit_variance)


def patches_from_path(
    path: PathLike,
    size: int = 16,
    n_per_image: int | None = None,
    held_out: float = 0.25,
    seed: int = 0,
    unit_variance: bool = False,
) -> PatchSet:
    """Patches from CIFAR-10 python batches (a batch file, or a folder holding them) or from
    a folder of image files.  ``n_per_image`` defaults to 1 for CIFAR-10 (60000 small
    images) and 2000 for a folder."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"path not found: {path}")
    is_cifar = os.path.isfile(path) or any(f.startswith(("data_batch", "test_batch")) for f in os.listdir(path))
    images = cifar10_images(path) if is_cifar else folder_images(path)
    n = n_per_image if n_per_image is not None else (1 if is_cifar else 2000)
    return patch_set(images, size, n, held_out, seed, unit_variance=unit_variance)
