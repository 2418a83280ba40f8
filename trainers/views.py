"""The built-in augmentation pipeline: one random view of every image of a batch, on its device.

Why not a stock ``kornia.augmentation.AugmentationSequential``: on a GPU its per-module
bookkeeping makes the views, not the model, the bottleneck of a small-model SimCLR step (the
README's performance section measures both). Here the whole pipeline is a handful of batched
tensor ops:

1. crop + flip + resize to the output size as two batched matmuls with per-sample bilinear
   weight matrices (``Ry @ x @ Rx^T``); when the config rotates, one per-sample affine matrix
   (crop box, flip, rotation) and a single ``affine_grid`` + ``grid_sample`` instead;
2. colour jitter as per-sample factors, in the fixed order brightness, contrast, then
   saturation + hue (+ grayscale) folded into one per-sample 3x3 colour matrix in YIQ space;
3. a per-sample separable Gaussian blur (one grouped conv per direction);
4. solarize as a masked ``torch.where``.

Random parameters are drawn per sample, on the batch's device, from torch's global RNG (one
``torch.rand`` call per batch). A probability decides per sample whether an op applies; an op
that does not apply gets identity parameters (factor 1, angle 0, impulse kernel), so there is no
data-dependent Python branching, no ``.item()`` and no host copy: the pipeline can be
``torch.compile``'d or CUDA-graphed. Python branches depend only on the config (an op whose
probability or magnitude is 0 is skipped entirely).

Conventions others rely on:
- Crop boxes are ``(x0, y0, x1, y1)`` in normalised ``[0, 1]`` image coordinates (pixel edges,
  not centres) and describe the region before flip and rotation. The crop aspect ratio is
  ``w / h`` in these normalised units, which equals the pixel ratio for square images (all the
  project's datasets are square).
- RandomResizedCrop fallback: the area fraction ``a`` is sampled exactly uniform in
  ``[scale_min, scale_max]``; when the sampled ratio would push the box out of the image
  (``w > 1`` or ``h > 1``) its log is clamped to ``[log a, -log a]``, the widest ratio that fits
  at that area. Areas are therefore never biased (torchvision's rejection loop biases them
  towards small crops), and ratios stay inside ``[ratio_min, ratio_max]``, pulled towards 1 only
  for crops larger than ``ratio_min`` (0.75 by default) of the image.
- Hue is a rotation of the chroma plane (I, Q) of YIQ by ``2*pi*hue`` (an approximation of an
  HSV hue shift that is linear, hence one matrix). Saturation scales (I, Q); grayscale zeroes
  them. The colour result is clamped once after that matrix, not between its factors.
- Out-of-image samples (rotation corners) use reflection padding, which inside the image
  coincides with border clamping, so crops touching the border are not darkened.
"""

from __future__ import annotations

import math

import kornia
import torch
import torch.nn.functional as F
from torch import Tensor

from trainers.config import ViewsConfig

# Column order of the single uniform draw per sample (see ViewPipeline.sample_params).
_U = {
    name: i
    for i, name in enumerate(
        (
            "area",
            "ratio",
            "x",
            "y",
            "flip",
            "angle",
            "jitter",
            "brightness",
            "contrast",
            "saturation",
            "hue",
            "grayscale",
            "blur",
            "sigma",
            "solarize",
        )
    )
}
# NTSC RGB -> YIQ; Y is the ITU-R 601 luma that torchvision's rgb_to_grayscale uses.
_RGB_TO_YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))


def effective_params(cfg: ViewsConfig, channels: int) -> ViewsConfig:
    """The pipeline knobs after ``strength`` s, so that s=0 is the identity and s=1 the knobs as given.

    Each knob scales as ``ViewsConfig.pipeline_knobs()`` says (linear, towards one, log, fixed).
    Saturation, hue and grayscale only exist for 3-channel images and are 0 otherwise. The result
    is a ViewsConfig (not re-validated: at s=0 some magnitudes are 0 where the schema wants > 0).
    """
    r = cfg.resolved(channels)
    s = float(r.strength)
    scaled: dict[str, float] = {}
    for knob, rule in ViewsConfig.pipeline_knobs().items():
        m = float(getattr(r, knob))
        if rule == "linear":
            scaled[knob] = s * m
        elif rule == "towards_one":
            scaled[knob] = 1.0 - s * (1.0 - m)
        elif rule == "log":
            scaled[knob] = math.exp(s * math.log(m))
        else:
            scaled[knob] = m
    if channels != 3:
        scaled.update(saturation=0.0, hue=0.0, grayscale_p=0.0)
    return r.model_copy(update=scaled)


def blur_kernel_size(size: int, sigma_max: float) -> int:
    """Odd Gaussian kernel size: SimCLR's ~10% of the image, no wider than 3 sigma, at least 3.

    Fixed per pipeline (not per sample) so that the blur is one grouped conv of static shape.
    """
    by_image = math.ceil(size / 10)
    by_image += 1 - by_image % 2
    by_sigma = 2 * math.ceil(3 * sigma_max) + 1
    return max(3, min(by_image, by_sigma))


def _unit(u: Tensor, lo: float, hi: float) -> Tensor:
    return lo + (hi - lo) * u


def _bilinear_matrix(start: Tensor, stop: Tensor, n_in: int, n_out: int) -> Tensor:
    """[B, n_out, n_in] weights resampling the span start..stop (normalised [0,1]) to n_out pixels.

    Output pixel centre i samples input pixel coordinate ``(start + (stop - start) * (i + 0.5)
    / n_out) * n_in - 0.5``, clamped to the image (border mode, as ``align_corners=False``
    bilinear ``grid_sample``). Each row holds two taps, scattered into zeros: 4x cheaper on CPU
    than evaluating the hat function densely. The two taps never collide, so it is deterministic.
    """
    centres = (torch.arange(n_out, device=start.device, dtype=start.dtype) + 0.5) / n_out
    src = ((start.unsqueeze(1) + (stop - start).unsqueeze(1) * centres) * n_in - 0.5).clamp(0.0, n_in - 1.0)
    low = src.floor().clamp(max=n_in - 2.0)
    frac = (src - low).unsqueeze(2)
    index = low.long().unsqueeze(2)
    weights = torch.zeros(start.shape[0], n_out, n_in, device=start.device, dtype=start.dtype)
    return weights.scatter_(2, index, 1.0 - frac).scatter_(2, index + 1, frac)


class ViewPipeline:
    """Makes two independent random views of a batch; see the module docstring for the ops."""

    def __init__(self, cfg: ViewsConfig, channels: int, out_size: int | None = None):
        self.cfg = cfg
        self.channels = channels
        self.out_size = out_size
        self.params = effective_params(cfg, channels)
        p = self.params
        self._jitter = p.jitter_p > 0 and (p.brightness > 0 or p.contrast > 0 or p.saturation > 0 or p.hue > 0)
        self._colour_matrix = channels == 3 and (
            (self._jitter and (p.saturation > 0 or p.hue > 0)) or p.grayscale_p > 0
        )
        self._yiq: dict[torch.device, tuple[Tensor, Tensor, Tensor]] = {}

    # ------------------------------------------------------------------ parameters

    def sample_params(self, batch: int, device: torch.device | str) -> dict[str, Tensor]:
        """Per-sample random parameters for ``batch`` views, drawn on ``device``.

        Keys: ``boxes`` [B,4]; bool masks ``flip``, ``jitter``, ``grayscale``, ``blur``,
        ``solarize`` (whether the op applies); ``angle`` (radians); jitter factors
        ``brightness``, ``contrast``, ``saturation`` (multiplicative) and ``hue`` (turns) as
        sampled, whether or not ``jitter`` applies them; ``sigma`` as sampled.
        """
        p = self.params
        u = torch.rand(batch, len(_U), device=device)
        col = {name: u[:, i] for name, i in _U.items()}
        log_area = torch.log(_unit(col["area"], p.crop_scale_min, p.crop_scale_max))
        log_ratio = _unit(col["ratio"], math.log(p.crop_ratio_min), math.log(p.crop_ratio_max))
        log_ratio = torch.maximum(torch.minimum(log_ratio, -log_area), log_area)  # fallback: keep w, h <= 1
        w = torch.exp(0.5 * (log_area + log_ratio)).clamp(max=1.0)
        h = torch.exp(0.5 * (log_area - log_ratio)).clamp(max=1.0)
        x0 = col["x"] * (1.0 - w)
        y0 = col["y"] * (1.0 - h)
        deg = math.radians(p.rotation_degrees)
        return {
            "boxes": torch.stack((x0, y0, x0 + w, y0 + h), dim=1),
            "flip": col["flip"] < p.flip_p,
            "angle": _unit(col["angle"], -deg, deg),
            "jitter": col["jitter"] < p.jitter_p,
            "brightness": _unit(col["brightness"], 1.0 - p.brightness, 1.0 + p.brightness),
            "contrast": _unit(col["contrast"], 1.0 - p.contrast, 1.0 + p.contrast),
            "saturation": _unit(col["saturation"], 1.0 - p.saturation, 1.0 + p.saturation),
            "hue": _unit(col["hue"], -p.hue, p.hue),
            "grayscale": col["grayscale"] < p.grayscale_p,
            "blur": col["blur"] < p.blur_p,
            "sigma": _unit(col["sigma"], p.blur_sigma_min, p.blur_sigma_max),
            "solarize": col["solarize"] < p.solarize_p,
        }

    # ------------------------------------------------------------------ ops

    def _out_size(self, x: Tensor) -> tuple[int, int]:
        return tuple(x.shape[-2:]) if self.out_size is None else (self.out_size, self.out_size)

    def _geometry(self, x: Tensor, prm: dict[str, Tensor]) -> Tensor:
        """Crop + flip (+ rotation) + resize; separable matmuls unless the config rotates."""
        if self.params.rotation_degrees > 0:
            return self._resample_affine(x, prm)
        return self._resample_separable(x, prm)

    def _resample_affine(self, x: Tensor, prm: dict[str, Tensor]) -> Tensor:
        """Crop + flip + rotate + resize as one affine ``grid_sample``.

        Output coordinate u (in [-1, 1]) samples the input at ``c + R @ diag(w*f, h) @ u``:
        c the box centre, (w, h) its half-extent in [-1, 1] units, f = -1 when flipped, R the
        rotation, so the content is rotated rigidly about the box centre.
        """
        boxes = prm["boxes"]
        w = (boxes[:, 2] - boxes[:, 0]) * torch.where(prm["flip"], -1.0, 1.0)
        h = boxes[:, 3] - boxes[:, 1]
        cos, sin = torch.cos(prm["angle"]), torch.sin(prm["angle"])
        theta = torch.stack(
            (
                torch.stack((cos * w, -sin * h, boxes[:, 0] + boxes[:, 2] - 1.0), dim=1),
                torch.stack((sin * w, cos * h, boxes[:, 1] + boxes[:, 3] - 1.0), dim=1),
            ),
            dim=1,
        )
        grid = F.affine_grid(theta, [x.shape[0], x.shape[1], *self._out_size(x)], align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    def _resample_separable(self, x: Tensor, prm: dict[str, Tensor]) -> Tensor:
        """Crop + flip + resize as ``Ry @ x @ Rx^T`` with per-sample bilinear weight matrices.

        Without rotation the bilinear ``grid_sample`` factorises into rows and columns; two small
        batched matmuls are ~5x faster than ``grid_sample`` on CPU and map onto GEMMs on a GPU.
        It matches ``_resample_affine`` at angle 0 up to float rounding (tested).
        """
        boxes = prm["boxes"]
        out_h, out_w = self._out_size(x)
        flip = prm["flip"]
        left = torch.where(flip, boxes[:, 2], boxes[:, 0])  # a flipped box is read right to left
        right = torch.where(flip, boxes[:, 0], boxes[:, 2])
        rows = _bilinear_matrix(boxes[:, 1], boxes[:, 3], x.shape[-2], out_h)
        cols = _bilinear_matrix(left, right, x.shape[-1], out_w)
        return rows.unsqueeze(1) @ x @ cols.transpose(1, 2).unsqueeze(1)

    def _yiq_mats(self, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
        """RGB->YIQ, YIQ->RGB and the luma row, cached per device (no host copy per call)."""
        if device not in self._yiq:
            fwd = torch.tensor(_RGB_TO_YIQ, dtype=torch.float64)
            self._yiq[device] = (
                fwd.float().to(device),
                torch.linalg.inv(fwd).float().to(device),
                fwd[0].float().to(device).view(1, 3, 1, 1),
            )
        return self._yiq[device]

    def _gray(self, x: Tensor) -> Tensor:
        """Per-pixel luma [N,1,H,W] (the channel mean for non-RGB)."""
        if x.shape[1] == 3:
            return (x * self._yiq_mats(x.device)[2]).sum(1, keepdim=True)
        return x.mean(1, keepdim=True)

    def _colour(self, x: Tensor, prm: dict[str, Tensor]) -> Tensor:
        """Brightness, contrast, then one per-sample YIQ matrix for saturation, hue and grayscale."""
        if self._jitter:
            on = prm["jitter"]
            fb = torch.where(on, prm["brightness"], 1.0).view(-1, 1, 1, 1)
            fc = torch.where(on, prm["contrast"], 1.0).view(-1, 1, 1, 1)
            x = (x * fb).clamp(0.0, 1.0)
            mean = self._gray(x).mean((1, 2, 3), keepdim=True)
            x = (fc * x + (1.0 - fc) * mean).clamp(0.0, 1.0)
        if self._colour_matrix:
            x = self._colour_matrix_op(x, prm)
        return x

    def _colour_matrix_op(self, x: Tensor, prm: dict[str, Tensor]) -> Tensor:
        fwd, inv, _ = self._yiq_mats(x.device)
        on = prm["jitter"]
        chroma = torch.where(on, prm["saturation"], 1.0) * torch.where(prm["grayscale"], 0.0, 1.0)
        turn = torch.where(on, prm["hue"], 0.0) * (2.0 * math.pi)
        cos, sin = chroma * torch.cos(turn), chroma * torch.sin(turn)
        one, zero = torch.ones_like(cos), torch.zeros_like(cos)
        mid = torch.stack((one, zero, zero, zero, cos, -sin, zero, sin, cos), dim=1).view(-1, 3, 3)
        mat = inv @ mid @ fwd
        return torch.einsum("nij,njhw->nihw", mat, x).clamp(0.0, 1.0)

    def _blur(self, x: Tensor, prm: dict[str, Tensor]) -> Tensor:
        """Separable Gaussian blur with a per-sample sigma; unblurred samples get an impulse kernel."""
        n, c, height, width = x.shape
        k = blur_kernel_size(min(height, width), self.params.blur_sigma_max)
        sigma = torch.where(prm["blur"], prm["sigma"], 0.0).unsqueeze(1)
        kernel = kornia.filters.get_gaussian_kernel1d(k, sigma).repeat_interleave(c, dim=0)
        flat = F.pad(x.reshape(1, n * c, height, width), [k // 2] * 4, mode="reflect")
        flat = F.conv2d(flat, kernel.view(n * c, 1, 1, k), groups=n * c)
        flat = F.conv2d(flat, kernel.view(n * c, 1, k, 1), groups=n * c)
        return flat.view(n, c, height, width)

    def _solarize(self, x: Tensor, prm: dict[str, Tensor]) -> Tensor:
        hit = prm["solarize"].view(-1, 1, 1, 1) & (x >= self.params.solarize_threshold)
        return torch.where(hit, 1.0 - x, x)

    # ------------------------------------------------------------------ public

    def apply(self, x: Tensor, prm: dict[str, Tensor]) -> Tensor:
        """Render views of float ``x`` [N,C,H,W] in [0,1] with given per-sample parameters."""
        p = self.params
        x = self._geometry(x, prm)
        x = self._colour(x, prm)
        if p.blur_p > 0:
            x = self._blur(x, prm)
        if p.solarize_p > 0:
            x = self._solarize(x, prm)
        return x.clamp(0.0, 1.0)

    def view(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """One random view of float ``x`` [B,C,H,W] in [0,1]; returns (view, crop boxes [B,4])."""
        prm = self.sample_params(x.shape[0], x.device)
        return self.apply(x, prm), prm["boxes"]

    def __call__(self, x: Tensor) -> Tensor:
        """One random view of each image of float ``x`` [B,C,H,W] in [0,1] (the pair sources' augment)."""
        return self.view(x)[0]

