"""The view families (patches, colour channels, frequency bands, rotation): shapes, ranges, geometry,
exact reassembly, and slow per-sample / per-frequency references that the batched code matches."""

from __future__ import annotations

import gzip
import importlib
import inspect
import itertools
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from trainers.pairs.base import PairSource
from trainers.pairs.channels import ColourChannels
from trainers.pairs.frequency import FrequencyBands
from trainers.pairs.patches import Patches
from trainers.pairs.rotation import Rotations

FASHION = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")


def smooth(n: int = 64, c: int = 3, size: int = 16, seed: int = 0) -> torch.Tensor:
    """Smooth random images in [0, 1]: coarse noise, bilinearly upsampled (stays in [0, 1])."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, c, 6, 6, generator=g)
    return F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)


def fashion(n: int = 16) -> torch.Tensor:
    """The first ``n`` Fashion-MNIST test images, float [n, 1, 28, 28] in [0, 1] (IDX read by hand)."""
    if not FASHION.exists():
        pytest.skip("Fashion-MNIST not present")
    with gzip.open(FASHION, "rb") as f:
        head = f.read(16)
        rows, cols = int.from_bytes(head[8:12], "big"), int.from_bytes(head[12:16], "big")
        data = f.read(n * rows * cols)
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).view(n, 1, rows, cols).float() / 255


# --- shapes and ranges -------------------------------------------------------------------------


@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize("size", [16, 27])
def test_patches_shapes_and_ranges(c, size):
    torch.manual_seed(0)
    x = smooth(c=c, size=size)
    rel = Patches(size=0.5, distance=0.5)
    p = max(2, round(0.5 * size))
    v1, v2 = rel.pair(x, x.clone())
    assert v1.shape == v2.shape == (64, c, p, p)
    assert rel.single(x).shape == (64, c, p, p)
    assert rel.eval_view(x) is x and rel.out_channels(c) == c
    for v in (v1, v2):
        assert v.min() >= 0 and v.max() <= 1
    assert Patches(size=0.01, distance=1.0).side((size, size)) == 2  # never a single pixel
    assert Patches(size=1.0, distance=1.0).pair(x, x)[0].shape == x.shape  # whole image, L = 0


@pytest.mark.parametrize("c", [1, 3])
def test_frequency_shapes_and_ranges(c):
    x = smooth(c=c, size=20)
    rel = FrequencyBands(cutoff=0.3, gap=0.2)
    low, high = rel.pair(x, x)
    assert low.shape == high.shape == x.shape and low.dtype == high.dtype == x.dtype
    assert rel.single(x).shape == x.shape
    assert rel.eval_view(x) is x and rel.out_channels(c) == c
    for v in (low, high):  # unclamped: ringing may leave [0, 1], not [-0.5, 1.5]
        assert v.min() >= -0.5 and v.max() <= 1.5
    assert (high.mean() - 0.5).abs() < 1e-4  # the high band has no DC: it sits at the +0.5 offset


@pytest.mark.parametrize("space", ["lab", "ydbdr"])
def test_channels_shapes_and_ranges(space):
    x = smooth(c=3, size=16)
    rel = ColourChannels(space)
    v1, v2 = rel.pair(x, x)
    full = rel.eval_view(x)
    assert v1.shape == v2.shape == full.shape == x.shape and rel.single(x).shape == x.shape
    assert rel.out_channels(3) == 3
    cube = torch.tensor([[[i >> 2 & 1, i >> 1 & 1, i & 1] for i in range(8)]], dtype=torch.float32)
    cube = cube.permute(0, 2, 1)[..., None]  # the 8 corners of the RGB cube, [1, 3, 8, 1]
    for cs in (full, rel.to_space(cube)):
        assert cs.min() >= -1e-4 and cs.max() <= 1 + 1e-4


def test_channels_reject_non_rgb_and_unknown_spaces():
    x = smooth(c=1, size=16)
    rel = ColourChannels("lab")
    for call in (lambda: rel.pair(x, x), lambda: rel.single(x), lambda: rel.eval_view(x), lambda: rel.out_channels(1)):
        with pytest.raises(ValueError):
            call()
    with pytest.raises(ValueError):
        ColourChannels("hsv")


def test_constructors_validate_their_ranges():
    for bad in (lambda: Patches(0.0, 0.5), lambda: Patches(1.1, 0.5), lambda: Patches(0.5, -0.1),
                lambda: Patches(0.5, 1.1), lambda: FrequencyBands(0.0, 0.0), lambda: FrequencyBands(1.0, 0.0),
                lambda: FrequencyBands(0.5, -0.1), lambda: FrequencyBands(0.5, 1.5)):
        with pytest.raises(ValueError):
            bad()


# --- patches -----------------------------------------------------------------------------------


def test_patches_at_distance_zero_are_identical():
    torch.manual_seed(1)
    x = smooth(c=3, size=24)
    v1, v2 = Patches(size=0.4, distance=0.0).pair(x, x)
    assert torch.equal(v1, v2)


@pytest.mark.parametrize("distance", [0.0, 0.25, 0.5, 0.75, 1.0])
def test_patch_centre_distance_and_containment(distance):
    torch.manual_seed(2)
    s, rel = 28, Patches(size=0.3, distance=distance)
    p = rel.side((s, s))
    big_l = s - p
    first, second = rel.draw(4096, s, "cpu")
    measured = (second - first).float().norm(dim=1)
    # each component is rounded separately: the error is at most sqrt(2) / 2 pixels
    assert (measured - distance * big_l).abs().max() <= math.sqrt(2) / 2 + 1e-6
    assert (measured.mean() - distance * big_l).abs() < 0.25
    for corner in (first, second):
        assert corner.min() >= 0 and corner.max() <= big_l
    if distance == 0:  # the first corner ranges over every position
        assert first.min() == 0 and first.max() == big_l


def test_patch_containment_on_non_square_images():
    torch.manual_seed(3)
    rel = Patches(size=0.5, distance=1.0)
    first, second = rel.draw(2048, (16, 30), "cpu")
    p = rel.side((16, 30))
    for corner in (first, second):
        assert corner[:, 0].min() >= 0 and corner[:, 0].max() <= 16 - p
        assert corner[:, 1].min() >= 0 and corner[:, 1].max() <= 30 - p


@pytest.mark.parametrize("c", [1, 3])
def test_patches_gather_matches_a_per_sample_loop(c):
    a, b = smooth(c=c, size=21, seed=4), smooth(c=c, size=21, seed=5)
    rel = Patches(size=0.45, distance=0.6)
    torch.manual_seed(6)
    v1, v2 = rel.pair(a, b)
    torch.manual_seed(6)  # the same draw the pair used
    first, second = rel.draw(a.shape[0], 21, "cpu")
    p = rel.side((21, 21))
    for i in range(a.shape[0]):
        (y1, x1), (y2, x2) = first[i].tolist(), second[i].tolist()
        assert torch.equal(v1[i], a[i, :, y1:y1 + p, x1:x1 + p])
        assert torch.equal(v2[i], b[i, :, y2:y2 + p, x2:x2 + p])


# --- channels ----------------------------------------------------------------------------------


@pytest.mark.parametrize("space,atol", [("lab", 1e-3), ("ydbdr", 1e-5)])
def test_channels_reassemble_the_image(space, atol):
    x = smooth(c=3, size=16)
    rel = ColourChannels(space)
    v1, v2 = rel.pair(x, x)
    assert torch.equal(v1 + v2, rel.eval_view(x))
    assert torch.allclose(rel.to_rgb(v1 + v2), x, atol=atol)
    assert torch.equal(v1[:, 1:], torch.zeros_like(v1[:, 1:])) and v1[:, 0].abs().sum() > 0
    assert torch.equal(v2[:, :1], torch.zeros_like(v2[:, :1])) and v2[:, 1:].abs().sum() > 0
    assert torch.equal(rel.single(x), v1)


def test_ydbdr_luma_is_the_usual_weighted_sum():
    x = smooth(c=3, size=8)
    y = ColourChannels("ydbdr").to_space(x)[:, 0]
    assert torch.allclose(y, 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2], atol=1e-6)


# --- frequency ---------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [16, 27])
@pytest.mark.parametrize("cutoff", [0.2, 0.45, 0.8])
def test_frequency_bands_reassemble_at_gap_zero(size, cutoff):
    x = smooth(c=3, size=size)
    low, high = FrequencyBands(cutoff=cutoff, gap=0.0).pair(x, x)
    assert torch.allclose(low + (high - 0.5), x, atol=1e-5)


def test_frequency_bands_reassemble_fashion_mnist():
    x = fashion()
    low, high = FrequencyBands(cutoff=0.3, gap=0.0).pair(x, x)
    assert torch.allclose(low + (high - 0.5), x, atol=1e-5)
    assert low.min() >= -0.5 and high.max() <= 1.5 + 0.2  # sharp edges ring: "about" [-0.5, 1.5]


def test_frequency_energy_shrinks_as_the_gap_grows():
    x = smooth(c=1, size=28)
    energies = []
    for gap in (0.0, 0.25, 0.5, 1.0):
        low, high = FrequencyBands(cutoff=0.3, gap=gap).pair(x, x)
        energies.append((low.square().sum().item(), (high - 0.5).square().sum().item()))
    for band in (0, 1):
        seq = [e[band] for e in energies]
        assert all(later < earlier for earlier, later in itertools.pairwise(seq)), seq
    assert energies[-1][0] == 0.0 and energies[-1][1] < 1e-3 * energies[0][1]  # gap 1: only the Nyquist corner


def reference_masks(h: int, w: int, cutoff: float, gap: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The masks built one frequency index at a time, from fftfreq's definition."""
    low, high = torch.zeros(h, w // 2 + 1), torch.zeros(h, w // 2 + 1)
    for ky in range(h):
        fy = (ky if ky < (h + 1) // 2 else ky - h) / h
        for kx in range(w // 2 + 1):
            r = math.sqrt(fy * fy + (kx / w) ** 2) / math.sqrt(0.5)
            low[ky, kx] = float(r < cutoff * (1 - gap))
            high[ky, kx] = float(r >= cutoff + (1 - cutoff) * gap)
    return low, high


@pytest.mark.parametrize("h,w", [(16, 16), (27, 27), (16, 21)])
@pytest.mark.parametrize("cutoff,gap", [(0.3, 0.0), (0.45, 0.3), (0.7, 1.0)])
def test_frequency_masks_match_a_loop_reference(h, w, cutoff, gap):
    rel = FrequencyBands(cutoff=cutoff, gap=gap)
    low, high = rel.masks(h, w, "cpu")
    ref_low, ref_high = reference_masks(h, w, cutoff, gap)
    assert torch.equal(low, ref_low) and torch.equal(high, ref_high)
    assert rel.masks(h, w, "cpu")[0] is low  # cached, not rebuilt
    if gap == 0:
        assert torch.equal(low + high, torch.ones_like(low))  # complementary


# --- integration and host syncs ----------------------------------------------------------------


def test_relations_plug_into_a_pair_source():
    images = (smooth(n=32, c=3, size=16) * 255).to(torch.uint8)
    idx = torch.arange(8)
    for rel, shape in ((Patches(0.5, 0.5), (8, 3, 8, 8)), (ColourChannels("lab"), (8, 3, 16, 16)),
                       (FrequencyBands(0.3, 0.1), (8, 3, 16, 16)), (Rotations(45.0), (8, 3, 16, 16))):
        source = PairSource(images, relation=rel)
        v1, v2 = source(idx)
        assert v1.shape == v2.shape == shape and source.channels == 3
        only, none = source(idx, need_second=False)
        assert only.shape == shape and none is None


@pytest.mark.parametrize("module", ["patches", "channels", "frequency", "rotation"])
def test_no_host_sync_in_the_relations(module):
    source = inspect.getsource(importlib.import_module(f"trainers.pairs.{module}"))
    for sync in (".item(", ".tolist(", ".cpu(", ".numpy(", "synchronize("):
        assert sync not in source, f"{module.__name__} calls {sync}"


# --- rotation ----------------------------------------------------------------------------------


@pytest.mark.parametrize("c,hw", [(1, (16, 16)), (3, (12, 20))])
def test_rotation_shapes_and_ranges(c, hw):
    torch.manual_seed(4)
    x = F.interpolate(smooth(c=c), size=hw, mode="bilinear", align_corners=False)
    rel = Rotations(angle=60.0)
    v1, v2 = rel.pair(x, x)
    assert v1.shape == v2.shape == rel.single(x).shape == x.shape and v1.dtype == x.dtype
    assert rel.eval_view(x) is x and rel.out_channels(c) == c
    for v in (v1, v2):  # bilinear resampling with zeros outside stays in [0, 1]
        assert v.min() >= 0 and v.max() <= 1 + 1e-6
    for bad in (-1.0, 180.5):
        with pytest.raises(ValueError):
            Rotations(bad)


def test_rotation_at_angle_zero_gives_identical_views():
    torch.manual_seed(5)
    x = smooth(c=3, size=16)
    v1, v2 = Rotations(0.0).pair(x, x)
    assert torch.equal(v1, v2) and not torch.equal(v1, x)  # the same random base angle for both


def test_rotation_angles_are_the_knob_apart():
    first, second = Rotations(72.0).angles(4096, "cpu")
    offset = torch.rad2deg(second - first)
    assert torch.allclose(offset.abs(), torch.full_like(offset, 72.0), atol=1e-3)
    assert 0.45 < (offset > 0).float().mean() < 0.55  # both directions
    assert first.min() >= 0 and first.max() < 2 * math.pi and first.std() > 1.5  # uniform base angle


@pytest.mark.parametrize("k", [1, 2, 3])
def test_rotation_by_quarter_turns_matches_rot90(k):
    """The reference: at multiples of 90 degrees a square image's pixel centres map onto pixel centres."""
    x = smooth(n=4, c=3, size=10)
    turned = Rotations.rotate(x, torch.full((4,), k * math.pi / 2))
    assert torch.allclose(turned, torch.rot90(x, k, (2, 3)), atol=1e-5)


def test_rotation_views_share_less_as_the_angle_grows():
    """Pixel correlation between the two views of Fashion-MNIST images falls from 0 to 90 degrees
    (further on it rises again: a half turn of a near-symmetric garment resembles the garment)."""
    x = fashion(256)
    corr = []
    for angle in (0.0, 30.0, 60.0, 90.0):
        torch.manual_seed(6)
        v1, v2 = (v.flatten(1) - v.flatten(1).mean(1, keepdim=True) for v in Rotations(angle).pair(x, x))
        corr.append(float(((v1 * v2).sum(1) / (v1.norm(dim=1) * v2.norm(dim=1))).mean()))
    assert corr[0] == pytest.approx(1.0) and all(a > b + 0.03 for a, b in itertools.pairwise(corr)), corr
