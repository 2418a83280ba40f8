"""The batched view pipeline against its spec and against slow per-image references."""

from __future__ import annotations

import inspect
import itertools
import math
import re
from types import SimpleNamespace

import kornia
import pytest
import torch
import torch.nn.functional as F

from benchmarks.stock_views import stock_kornia_pipeline
from trainers.config import ViewsConfig
from trainers.views import (
    ViewPipeline,
    blur_kernel_size,
    effective_params,
)

N_STATS = 20_000
# Only geometry: no colour, blur or solarize, so a view is exactly a resampled crop.
GEOMETRY_ONLY = {
    "brightness": 0.0,
    "contrast": 0.0,
    "saturation": 0.0,
    "hue": 0.0,
    "jitter_p": 0.0,
    "grayscale_p": 0.0,
    "blur_p": 0.0,
}


def smooth_images(b: int, c: int, size: int = 28) -> torch.Tensor:
    """uint8 images with structure at several scales, so that crops and colour changes matter."""
    coarse = torch.rand(b, c, 4, 4)
    fine = torch.rand(b, c, 14, 14)
    x = 0.7 * F.interpolate(coarse, size=size, mode="bilinear", align_corners=False)
    x = x + 0.3 * F.interpolate(fine, size=size, mode="bilinear", align_corners=False)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def two_views(pipe: ViewPipeline, x_uint8: torch.Tensor) -> SimpleNamespace:
    """Two independent views of a uint8 batch in one batched draw, as a pair source makes them."""
    b = x_uint8.shape[0]
    views, boxes = pipe.view(torch.cat((x_uint8, x_uint8)).float() / 255)
    return SimpleNamespace(v1=views[:b], v2=views[b:], boxes1=boxes[:b], boxes2=boxes[b:])


def ref_crop_resize(img: torch.Tensor, box: torch.Tensor, out: int, flip: bool) -> torch.Tensor:
    """Slow reference for one image [C,H,W]: sample the box at the output pixel centres.

    Builds the sampling grid by hand (no affine_grid, no weight matrices): output pixel i of n
    covers the box fraction (i + 0.5) / n; grid_sample takes [-1, 1] pixel-edge coordinates.
    """
    x0, y0, x1, y1 = box.tolist()
    t = (torch.arange(out, dtype=torch.float64) + 0.5) / out
    xs = x0 + (x1 - x0) * t
    ys = y0 + (y1 - y0) * t
    gy, gx = torch.meshgrid(ys * 2 - 1, xs * 2 - 1, indexing="ij")
    grid = torch.stack((gx, gy), dim=-1)[None].float()
    res = F.grid_sample(img[None], grid, mode="bilinear", padding_mode="border", align_corners=False)[0]
    return torch.flip(res, dims=[-1]) if flip else res


# --------------------------------------------------------------------------- effective params


def test_effective_params_scale_with_strength():
    cfg = ViewsConfig(strength=0.5, crop_scale_min=0.2, crop_scale_max=0.9, rotation_degrees=30, solarize_p=0.4)
    p = effective_params(cfg, 3)
    assert p.crop_scale_min == pytest.approx(0.6)
    assert p.crop_scale_max == pytest.approx(0.95)
    assert p.crop_ratio_min == pytest.approx(math.sqrt(3 / 4))
    assert p.crop_ratio_max == pytest.approx(math.sqrt(4 / 3))
    assert (p.flip_p, p.jitter_p, p.blur_p, p.solarize_p) == pytest.approx((0.25, 0.4, 0.25, 0.2))
    assert (p.brightness, p.contrast, p.saturation, p.hue) == pytest.approx((0.4, 0.4, 0.4, 0.1))
    assert p.grayscale_p == pytest.approx(0.1)
    assert (p.blur_sigma_min, p.blur_sigma_max) == pytest.approx((0.05, 1.0))
    assert p.rotation_degrees == pytest.approx(15)
    assert p.solarize_threshold == 0.5  # a threshold, not a magnitude


def test_effective_params_at_zero_and_for_grayscale():
    p0 = effective_params(ViewsConfig(strength=0.0, rotation_degrees=90, solarize_p=1.0), 3)
    assert (p0.crop_scale_min, p0.crop_scale_max, p0.crop_ratio_min, p0.crop_ratio_max) == (1, 1, 1, 1)
    for name in ("flip_p", "jitter_p", "grayscale_p", "blur_p", "solarize_p", "rotation_degrees", "brightness"):
        assert getattr(p0, name) == 0
    gray = effective_params(ViewsConfig(), 1)
    assert (gray.saturation, gray.hue, gray.grayscale_p) == (0, 0, 0)
    assert gray.brightness == pytest.approx(0.8)
    rgb = effective_params(ViewsConfig(), 3)
    assert (rgb.saturation, rgb.hue, rgb.grayscale_p) == pytest.approx((0.8, 0.2, 0.2))
    assert isinstance(rgb, ViewsConfig) and set(ViewsConfig.pipeline_knobs()) >= {"crop_scale_min", "rotation_degrees"}


def test_blur_kernel_size_is_odd_and_bounded():
    assert blur_kernel_size(28, 2.0) == 3
    assert blur_kernel_size(32, 2.0) == 5
    assert blur_kernel_size(224, 2.0) == 13  # 3 sigma caps SimCLR's 23
    assert blur_kernel_size(224, 10.0) == 23
    assert blur_kernel_size(8, 0.1) == 3


# --------------------------------------------------------------------------- sampled parameters


def test_crop_area_and_ratio_distribution():
    torch.manual_seed(0)
    cfg = ViewsConfig(strength=0.8, crop_scale_min=0.2, crop_scale_max=0.9)
    pipe = ViewPipeline(cfg, 3)
    p = pipe.params
    boxes = pipe.sample_params(N_STATS, "cpu")["boxes"].double()
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    area, ratio = w * h, w / h
    assert boxes.min() >= 0 and boxes.max() <= 1 + 1e-6
    assert area.min() >= p.crop_scale_min - 1e-5 and area.max() <= p.crop_scale_max + 1e-5
    assert area.mean() == pytest.approx((p.crop_scale_min + p.crop_scale_max) / 2, abs=0.005)
    mid = (p.crop_scale_min + p.crop_scale_max) / 2
    assert (area < mid).double().mean() == pytest.approx(0.5, abs=0.02)  # uniform, not just the right mean
    assert ratio.min() >= p.crop_ratio_min - 1e-5 and ratio.max() <= p.crop_ratio_max + 1e-5
    assert ratio.min() < p.crop_ratio_min * 1.02 and ratio.max() > p.crop_ratio_max * 0.98  # the range is used


def test_crop_fallback_keeps_area_and_fits():
    """Large crops with extreme ratios would leave the image: the ratio gives way, not the area."""
    torch.manual_seed(19)
    pipe = ViewPipeline(ViewsConfig(crop_scale_min=0.9, crop_ratio_min=0.5, crop_ratio_max=2.0), 1)
    boxes = pipe.sample_params(N_STATS, "cpu")["boxes"].double()
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    area, ratio = w * h, w / h
    assert area.min() >= 0.9 - 1e-5 and area.mean() == pytest.approx(0.95, abs=0.003)
    assert w.max() <= 1 + 1e-6 and h.max() <= 1 + 1e-6
    assert ratio.min() >= 0.9 - 1e-4 and ratio.max() <= 1 / 0.9 + 1e-4  # the widest ratio that fits


def test_crop_box_positions_cover_the_image():
    torch.manual_seed(1)
    boxes = ViewPipeline(ViewsConfig(crop_scale_min=0.1, crop_scale_max=0.1), 1).sample_params(N_STATS, "cpu")["boxes"]
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    assert centres.mean(0).tolist() == pytest.approx([0.5, 0.5], abs=0.01)
    assert boxes[:, 0].min() < 0.01 and boxes[:, 2].max() > 0.99


def test_apply_rates_and_factor_ranges():
    torch.manual_seed(2)
    cfg = ViewsConfig(strength=0.9, solarize_p=0.5, rotation_degrees=20)
    pipe = ViewPipeline(cfg, 3)
    p = pipe.params
    prm = pipe.sample_params(N_STATS, "cpu")
    for mask, prob in (
        ("flip", p.flip_p),
        ("jitter", p.jitter_p),
        ("grayscale", p.grayscale_p),
        ("blur", p.blur_p),
        ("solarize", p.solarize_p),
    ):
        assert prm[mask].dtype == torch.bool
        assert prm[mask].float().mean() == pytest.approx(prob, abs=0.015), mask
    for name, mag in (("brightness", p.brightness), ("contrast", p.contrast), ("saturation", p.saturation)):
        f = prm[name]
        assert f.min() >= 1 - mag - 1e-6 and f.max() <= 1 + mag + 1e-6, name
        assert f.mean() == pytest.approx(1.0, abs=0.015), name
        assert f.std() == pytest.approx(2 * mag / math.sqrt(12), rel=0.03), name
    assert prm["hue"].abs().max() <= p.hue + 1e-6 and prm["hue"].mean() == pytest.approx(0, abs=0.005)
    assert prm["sigma"].min() >= p.blur_sigma_min - 1e-6 and prm["sigma"].max() <= p.blur_sigma_max + 1e-6
    assert prm["sigma"].mean() == pytest.approx((p.blur_sigma_min + p.blur_sigma_max) / 2, abs=0.02)
    assert prm["angle"].abs().max() <= math.radians(p.rotation_degrees) + 1e-6


def test_parameters_follow_the_global_seed_and_the_device():
    pipe = ViewPipeline(ViewsConfig(), 1)
    torch.manual_seed(3)
    a = pipe.sample_params(16, "cpu")
    torch.manual_seed(3)
    b = pipe.sample_params(16, torch.device("cpu"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(v.device.type == "cpu" and v.shape[0] == 16 for v in a.values())


# --------------------------------------------------------------------------- strength


@pytest.mark.parametrize("channels", [1, 3])
def test_strength_zero_is_identity(channels):
    torch.manual_seed(4)
    x = smooth_images(32, channels)
    cfg = ViewsConfig(strength=0.0, rotation_degrees=45, solarize_p=1.0)
    out = two_views(ViewPipeline(cfg, channels), x)
    ref = x.float() / 255
    assert (out.v1 - ref).abs().max() < 1e-4
    assert (out.v2 - ref).abs().max() < 1e-4
    assert torch.allclose(out.boxes1, torch.tensor([0.0, 0.0, 1.0, 1.0]).expand(32, 4))


def test_view_difference_grows_with_strength():
    torch.manual_seed(5)
    x = smooth_images(512, 3)
    ref = x.float() / 255
    gaps, drift = [], []
    for s in (0.0, 0.25, 0.5, 0.75, 1.0):
        out = two_views(ViewPipeline(ViewsConfig(strength=s), 3), x)
        gaps.append((out.v1 - out.v2).abs().mean().item())
        drift.append((out.v1 - ref).abs().mean().item())
    assert gaps[0] < 1e-5
    assert all(a < b for a, b in itertools.pairwise(gaps)), gaps
    assert drift[-1] > 0.1, drift


# --------------------------------------------------------------------------- geometry


@pytest.mark.parametrize("out_size", [None, 20, 40])
def test_views_are_the_reported_crops(out_size):
    torch.manual_seed(6)
    x = smooth_images(12, 3).float() / 255
    pipe = ViewPipeline(ViewsConfig(**GEOMETRY_ONLY, crop_scale_min=0.1), 3, out_size=out_size)
    prm = pipe.sample_params(12, "cpu")
    views = pipe.apply(x, prm)
    size = out_size or 28
    for i in range(12):
        ref = ref_crop_resize(x[i], prm["boxes"][i], size, bool(prm["flip"][i]))
        assert (views[i] - ref).abs().max() < 1e-5, i


def test_view_returns_the_boxes_it_cropped():
    """A horizontal ramp encodes x: each unflipped view's ramp must span its own box."""
    torch.manual_seed(7)
    size = 64
    ramp = ((torch.arange(size) + 0.5) / size).expand(16, 1, size, size)
    pipe = ViewPipeline(ViewsConfig(**GEOMETRY_ONLY, flip_p=0.0, crop_scale_min=0.3), 1, out_size=32)
    views, boxes = pipe.view(ramp)
    row = views[:, 0, 0, :]  # the ramp's value is the normalised x coordinate it came from
    edge = 1.0 / size  # the half-pixel at each image border is clamped
    assert torch.allclose(row.mean(1), (boxes[:, 0] + boxes[:, 2]) / 2, atol=edge)
    assert torch.allclose(row[:, 0], boxes[:, 0] + (boxes[:, 2] - boxes[:, 0]) / 64, atol=edge)
    assert torch.allclose(row[:, -1], boxes[:, 2] - (boxes[:, 2] - boxes[:, 0]) / 64, atol=edge)


def test_full_box_matches_interpolate():
    torch.manual_seed(8)
    x = smooth_images(4, 1).float() / 255
    pipe = ViewPipeline(ViewsConfig(**GEOMETRY_ONLY, flip_p=0.0), 1, out_size=17)
    prm = pipe.sample_params(4, "cpu")
    prm["boxes"] = torch.tensor([0.0, 0.0, 1.0, 1.0]).expand(4, 4)
    ref = F.interpolate(x, size=17, mode="bilinear", align_corners=False)
    assert (pipe.apply(x, prm) - ref).abs().max() < 1e-5


def test_rotation_path_matches_separable_path_and_rotates():
    torch.manual_seed(9)
    x = smooth_images(8, 3).float() / 255
    pipe = ViewPipeline(ViewsConfig(**GEOMETRY_ONLY, rotation_degrees=90), 3, out_size=24)
    prm = pipe.sample_params(8, "cpu")
    prm["angle"] = torch.zeros(8)
    assert (pipe._resample_affine(x, prm) - pipe._resample_separable(x, prm)).abs().max() < 1e-5
    prm["angle"] = torch.full((8,), math.pi / 2)
    prm["boxes"] = torch.tensor([0.0, 0.0, 1.0, 1.0]).expand(8, 4)
    prm["flip"] = torch.zeros(8, dtype=torch.bool)
    turned = ViewPipeline(ViewsConfig(**GEOMETRY_ONLY, rotation_degrees=90), 3).apply(x, prm)
    assert (turned - torch.rot90(x, 1, dims=(-2, -1))).abs().max() < 1e-4


def test_flip_mirrors_the_crop():
    torch.manual_seed(10)
    x = smooth_images(6, 1).float() / 255
    pipe = ViewPipeline(ViewsConfig(**GEOMETRY_ONLY), 1)
    prm = pipe.sample_params(6, "cpu")
    prm["flip"] = torch.zeros(6, dtype=torch.bool)
    plain = pipe.apply(x, prm)
    prm["flip"] = torch.ones(6, dtype=torch.bool)
    assert (pipe.apply(x, prm) - torch.flip(plain, dims=[-1])).abs().max() < 1e-5


# --------------------------------------------------------------------------- colour, blur, solarize


def identity_geometry(**knobs) -> ViewsConfig:
    return ViewsConfig(crop_scale_min=1.0, crop_ratio_min=1.0, crop_ratio_max=1.0, flip_p=0.0, **knobs)


def test_brightness_and_contrast_match_formula():
    torch.manual_seed(11)
    x = smooth_images(16, 1).float() / 255
    cfg = identity_geometry(brightness=0.6, contrast=0.6, jitter_p=0.5, blur_p=0.0)
    pipe = ViewPipeline(cfg, 1)
    prm = pipe.sample_params(16, "cpu")
    out = pipe.apply(x, prm)
    for i in range(16):
        ref = x[i]
        if prm["jitter"][i]:
            ref = (ref * prm["brightness"][i]).clamp(0, 1)
            ref = (prm["contrast"][i] * ref + (1 - prm["contrast"][i]) * ref.mean()).clamp(0, 1)
        assert (out[i] - ref).abs().max() < 1e-5, i


def rgb_to_yiq(x: torch.Tensor) -> torch.Tensor:
    m = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    return torch.einsum("ij,njhw->nihw", m, x)


def test_saturation_hue_grayscale_act_on_chroma_only():
    torch.manual_seed(12)
    x = 0.4 + 0.2 * torch.rand(64, 3, 8, 8)  # mid-range colours: no clamping in play
    cfg = identity_geometry(brightness=0.0, contrast=0.0, saturation=0.5, hue=0.3, grayscale_p=0.3, blur_p=0.0)
    pipe = ViewPipeline(cfg, 3)
    prm = pipe.sample_params(64, "cpu")
    out = pipe.apply(x, prm)
    yin, yout = rgb_to_yiq(x), rgb_to_yiq(out)
    assert (yin[:, 0] - yout[:, 0]).abs().max() < 1e-5  # luma kept
    gray = prm["grayscale"]
    assert gray.any() and (~gray).any()
    assert (out[gray] - out[gray][:, :1]).abs().max() < 1e-5  # grayscale: R = G = B
    chroma_in = torch.complex(yin[:, 1], yin[:, 2])
    chroma_out = torch.complex(yout[:, 1], yout[:, 2])
    on = prm["jitter"] & ~gray
    scale = torch.where(prm["jitter"], prm["saturation"], 1.0)
    turn = torch.where(prm["jitter"], prm["hue"], 0.0) * 2 * math.pi
    expected = chroma_in * (scale * torch.exp(1j * turn)).view(-1, 1, 1)
    assert on.any()
    assert (chroma_out[~gray] - expected[~gray]).abs().max() < 1e-4


def test_blur_matches_kornia_per_image():
    torch.manual_seed(13)
    x = smooth_images(8, 3, size=40).float() / 255
    pipe = ViewPipeline(identity_geometry(jitter_p=0.0, grayscale_p=0.0, blur_p=0.5), 3)
    prm = pipe.sample_params(8, "cpu")
    out = pipe.apply(x, prm)
    k = blur_kernel_size(40, pipe.params.blur_sigma_max)
    assert prm["blur"].any() and (~prm["blur"]).any()
    for i in range(8):
        if prm["blur"][i]:
            s = float(prm["sigma"][i])
            ref = kornia.filters.gaussian_blur2d(x[i : i + 1], (k, k), (s, s), border_type="reflect")[0]
        else:
            ref = x[i]
        assert (out[i] - ref).abs().max() < 1e-5, i


def test_solarize_inverts_above_threshold():
    torch.manual_seed(14)
    x = torch.rand(32, 1, 8, 8)
    cfg = identity_geometry(jitter_p=0.0, blur_p=0.0, solarize_p=0.5, solarize_threshold=0.3)
    pipe = ViewPipeline(cfg, 1)
    prm = pipe.sample_params(32, "cpu")
    out = pipe.apply(x, prm)
    hit = prm["solarize"].view(-1, 1, 1, 1) & (x >= 0.3)
    assert (out - torch.where(hit, 1 - x, x)).abs().max() < 1e-5


# --------------------------------------------------------------------------- shapes and helpers


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("out_size", [None, 16])
def test_output_shapes_dtype_range(channels, out_size):
    torch.manual_seed(15)
    cfg = ViewsConfig(solarize_p=0.3, rotation_degrees=10)
    pipe = ViewPipeline(cfg, channels, out_size=out_size)
    out = two_views(pipe, smooth_images(10, channels))
    size = out_size or 28
    assert pipe(smooth_images(10, channels).float() / 255).shape == (10, channels, size, size)  # one view each
    for v in (out.v1, out.v2):
        assert v.shape == (10, channels, size, size) and v.dtype == torch.float32
        assert v.min() >= 0 and v.max() <= 1
    for b in (out.boxes1, out.boxes2):
        assert b.shape == (10, 4) and (b[:, 2:] > b[:, :2]).all() and b.min() >= 0 and b.max() <= 1 + 1e-6
    assert not torch.equal(out.boxes1, out.boxes2)


@pytest.mark.parametrize("channels", [1, 3])
def test_stock_kornia_pipeline_runs(channels):
    torch.manual_seed(18)
    x = smooth_images(6, channels).float() / 255
    stock = stock_kornia_pipeline(ViewsConfig(solarize_p=0.2, rotation_degrees=10), channels, 20)
    out = stock(x)
    assert isinstance(stock, torch.nn.Module)
    assert out.shape == (6, channels, 20, 20) and out.min() >= 0 and out.max() <= 1


def test_view_path_has_no_host_sync():
    """Source check: no method on the view path reads a tensor value back to Python."""
    banned = re.compile(r"\.(item|cpu|tolist|numpy)\(|(?<![.\w])(float|int|bool)\(")
    for name in (
        "sample_params",
        "_geometry",
        "_resample_affine",
        "_resample_separable",
        "_colour",
        "_colour_matrix_op",
        "_gray",
        "_blur",
        "_solarize",
        "apply",
        "view",
        "__call__",
    ):
        body = inspect.getsource(getattr(ViewPipeline, name)).split('"""')[-1]
        assert not banned.search(body), name
