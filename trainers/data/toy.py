"""The controlled InfoMin testbed: images whose generative factors are known.

Why: InfoMin (Tian et al. 2020, their colourful-moving-MNIST experiment) claims that what the
two views *share* decides what a contrastive representation keeps. On natural images the
factors are unknown, so the claim can only be tested where every image is rendered from known
factors and a linear probe per factor reads out what the encoder kept. Here, three:

- ``class``: a Fashion-MNIST object (10 classes), downscaled and pasted as a white-on-colour
  alpha mask (its grey level is the opacity);
- ``background``: one of ``n_backgrounds`` colours evenly spaced in hue, plus a per-image colour
  jitter and a per-image noise texture (one of a fixed bank);
- ``position``: one cell of a ``grid`` x ``grid`` lattice of placements.

Factors are drawn independently and uniformly with a fixed seed: the dataset is a function of
the config alone. ``ToyDesign`` holds every rendering constant (see its docstring for why each
has its value).

The ``toy`` pair source (``trainers/pairs/toy.py``) re-renders training images from these
factors, keeping the ones the two views share.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from trainers.config import DatasetConfig
from trainers.data.bundle import DataBundle, DatasetError
from trainers.data.files import load_fashion_mnist

FACTORS = ("class", "background", "position")
DEFAULT_TRAIN = 20_000
DEFAULT_TEST = 5_000
SEED = 1234


@dataclass(frozen=True)
class ToyDesign:
    """Rendering constants of the testbed, chosen so that no factor is saturated before training.

    A linear probe on a *random-init* encoder is the reference: if it already reads a factor
    perfectly, training cannot show that sharing the factor keeps it. Saturated, well-separated
    colours (saturation 0.85) and a 2x2 grid of 20 px objects were read by random features at
    100% (background) and 99% (position); these values bring the random-init probes to 63%
    class, 94% background, 79% position (10k/5k images, width-16 convnet), leaving room both
    ways (measured with benchmarks/infomin_toy.py, whose table has the random-init row).

    canvas: image side when ``dataset.image_size`` is unset.
    object_fraction: object side / canvas side (26 px at 32: big enough to keep Fashion-MNIST
        classes legible, and it leaves 6 px of travel, so placements differ subtly).
    grid: placements per side (3: offsets 0, 3, 6 px); the extreme placements touch the edges.
    n_backgrounds, saturation, value: the palette, evenly spaced in hue; pale and dark so the
        colour is a small signal next to the white object, yet every colour is distinct.
    bg_jitter: per-image, per-channel uniform colour noise (+-, in [0,1] units), so a colour id
        is a cluster, not one exact RGB value; small enough that the clusters stay apart even
        after uint8 rounding (at 0.04 they overlapped: the nearest palette colour was right for
        only 84% of images, which capped the background probe).
    noise_std, noise_bank: per-pixel Gaussian luminance texture on the background, one of
        ``noise_bank`` fixed fields per image (the field index belongs to the background factor,
        so a re-rendering that keeps the background is bit-identical).
    """

    canvas: int = 32
    object_fraction: float = 0.8
    grid: int = 3
    n_backgrounds: int = 8
    saturation: float = 0.2
    value: float = 0.5
    bg_jitter: float = 0.015
    noise_std: float = 0.1
    noise_bank: int = 64


DESIGN = ToyDesign()


@dataclass
class ToyFactors:
    """The factors of a batch of renderings, on one device."""

    obj: Tensor  # int64 [B] index into the object bank
    background: Tensor  # int64 [B] palette index
    bg_rgb: Tensor  # float32 [B,3] background colour in [0,1] (palette + jitter)
    texture: Tensor  # int64 [B] index into the noise bank
    position: Tensor  # int64 [B] placement index


# --------------------------------------------------------------------------- geometry and colours


def palette(design: ToyDesign = DESIGN) -> Tensor:
    """Colours evenly spaced in hue at fixed saturation and value, float [n,3] in [0,1]."""
    n = design.n_backgrounds
    rgb = [colorsys.hsv_to_rgb(i / n, design.saturation, design.value) for i in range(n)]
    return torch.tensor(rgb, dtype=torch.float32)


def object_size(canvas: int, design: ToyDesign = DESIGN) -> int:
    return max(4, round(canvas * design.object_fraction))


def placements(canvas: int, design: ToyDesign = DESIGN) -> Tensor:
    """(row, col) offsets of the object's top-left corner, row-major over the grid: int64 [g*g, 2]."""
    far = canvas - object_size(canvas, design)
    steps = [round(far * i / (design.grid - 1)) for i in range(design.grid)] if design.grid > 1 else [far // 2]
    return torch.tensor([[r, c] for r in steps for c in steps], dtype=torch.int64)


def noise_fields(canvas: int, design: ToyDesign = DESIGN) -> Tensor:
    """The fixed bank of background textures, float [K,1,S,S] (seeded)."""
    gen = torch.Generator().manual_seed(SEED + 1)
    return design.noise_std * torch.randn(design.noise_bank, 1, canvas, canvas, generator=gen)


def shrink_objects(images: np.ndarray, size: int) -> Tensor:
    """Fashion-MNIST uint8 [N,28,28] -> antialiased uint8 [N,1,size,size] (the object bank)."""
    x = torch.from_numpy(np.ascontiguousarray(images))[:, None].float()
    x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8)


def jittered_colours(ids: Tensor, colours: Tensor, jitter: float, generator: torch.Generator | None = None) -> Tensor:
    """Palette colour of each id plus uniform per-channel noise of +-``jitter``, float [B,3]."""
    noise = torch.rand(ids.shape[0], 3, generator=generator, device=ids.device) * 2 - 1
    return (colours.to(ids.device)[ids] + jitter * noise).clamp(0, 1)


# --------------------------------------------------------------------------- rendering


def paste(objects: Tensor, offsets: Tensor, canvas: int) -> Tensor:
    """Place each object [B,1,o,o] at its (row, col) offset on an empty canvas: [B,1,S,S].

    One advanced-indexing write for the whole batch (no per-image loop)."""
    b, _, o, _ = objects.shape
    out = objects.new_zeros(b, canvas, canvas)
    steps = torch.arange(o, device=objects.device)
    rows = (offsets[:, :1] + steps)[:, :, None]
    cols = (offsets[:, 1:] + steps)[:, None, :]
    out[torch.arange(b, device=objects.device)[:, None, None], rows, cols] = objects[:, 0]
    return out[:, None]


def render(objects: Tensor, background: Tensor, offsets: Tensor) -> Tensor:
    """Alpha-composite white objects [B,1,o,o] over backgrounds float [B,3,S,S]: uint8 [B,3,S,S].

    The object's grey level is its opacity. Quantised to uint8 so that a re-rendering with the
    same factors is bit-identical to the stored image."""
    alpha = paste(objects, offsets, background.shape[-1]).float().div_(255)
    img = background * (1 - alpha) + alpha
    return img.mul_(255).round_().clamp_(0, 255).to(torch.uint8)


def render_factors(f: ToyFactors, assets: dict[str, Tensor]) -> Tensor:
    """Render a batch from its factors and the dataset's assets (bank, noise, placements)."""
    background = f.bg_rgb[:, :, None, None] + assets["noise"][f.texture]
    return render(assets["bank"][f.obj], background.clamp(0, 1), assets["placements"][f.position])


# --------------------------------------------------------------------------- dataset


def draw_factors(n: int, design: ToyDesign, gen: torch.Generator) -> ToyFactors:
    """Image i shows object i; background, texture and position drawn uniformly, independently."""
    background = torch.randint(0, design.n_backgrounds, (n,), generator=gen)
    return ToyFactors(
        obj=torch.arange(n),
        background=background,
        bg_rgb=jittered_colours(background, palette(design), design.bg_jitter, gen),
        texture=torch.randint(0, design.noise_bank, (n,), generator=gen),
        position=torch.randint(0, design.grid**2, (n,), generator=gen),
    )


def make_assets(objects: np.ndarray, canvas: int, design: ToyDesign) -> dict[str, Tensor]:
    return {
        "bank": shrink_objects(objects, object_size(canvas, design)),
        "noise": noise_fields(canvas, design),
        "placements": placements(canvas, design),
        "palette": palette(design),
        "bg_jitter": torch.tensor(design.bg_jitter),
    }


def load_infomin_toy(cfg: DatasetConfig, design: ToyDesign | None = None) -> DataBundle:
    """Render the testbed from Fashion-MNIST (same search places and error as ``fashion_mnist``).

    ``subset`` training-split images (default 20000; the validation split is the last
    ``val_size`` of them) and ``test_subset`` test images (default 5000), each showing a distinct
    object of the matching Fashion-MNIST split; ``image_size`` is the canvas side. Validation
    objects are not in the object bank the pair source redraws from, so they never reach training.
    """
    design = design or DESIGN
    train_imgs, train_lbls, test_imgs, test_lbls = load_fashion_mnist(cfg)
    canvas = cfg.image_size or design.canvas
    gen = torch.Generator().manual_seed(SEED)
    n_total = min(cfg.subset or DEFAULT_TRAIN, len(train_imgs))
    n_val = cfg.val_count(n_total)
    if not 0 < n_val < n_total:
        raise DatasetError(f"dataset.val_size must be between 1 and {n_total - 1} for {n_total} images, got {n_val}")
    n_train, n_test = n_total - n_val, min(cfg.test_subset or DEFAULT_TEST, len(test_imgs))
    parts = {"train": (train_imgs[:n_train], train_lbls[:n_train]),
             "val": (train_imgs[n_train:n_total], train_lbls[n_train:n_total]),
             "test": (test_imgs[:n_test], test_lbls[:n_test])}
    assets, factors, images, labels = {}, {}, {}, {}
    for split, (objects, lbls) in parts.items():
        assets[split] = make_assets(objects, canvas, design)
        factors[split] = draw_factors(len(objects), design, gen)
        images[split] = render_factors(factors[split], assets[split])
        labels[split] = torch.from_numpy(lbls.astype(np.int64))
    ftr = factors["train"]
    return DataBundle(
        train_x=images["train"], train_y=labels["train"],
        val_x=images["val"], val_y=labels["val"],
        test_x=images["test"], test_y=labels["test"],
        name="infomin_toy",
        num_classes=10,
        factors={
            "class": (labels["train"], labels["val"], labels["test"]),
            "background": tuple(factors[s].background for s in parts),
            "position": tuple(factors[s].position for s in parts),
        },
        extras={  # what the toy pair source needs to re-render training images
            **assets["train"],  # bank uint8 [M,1,o,o], noise, placements, palette, bg_jitter
            "bank_labels": labels["train"].clone(),
            "obj": ftr.obj,
            "background": ftr.background,
            "bg_rgb": ftr.bg_rgb,
            "texture": ftr.texture,
            "position": ftr.position,
        },
    )


def n_values(data: DataBundle, factor: str) -> int:
    """How many values a factor takes (10 classes, the palette's colours, the placements)."""
    e = data.extras
    return {"class": 10, "background": e["palette"].shape[0], "position": e["placements"].shape[0]}[factor]
