"""The controlled InfoMin testbed: images whose generative factors are known, and view pairs that
share a chosen subset of them.

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

``ToyPairs`` makes the training pairs: view 1 is the image itself, view 2 re-renders it keeping
each factor that ``views.shared`` lists and redrawing the others (class -> another object of the
bank, of any class; background -> a random palette colour with fresh jitter and texture;
position -> a random placement). At ``views.strength`` 0 nothing else differs between the views,
so with every factor shared the two views are the same image (the trivial end of the testbed).
A strength above 0 also passes both views through the ordinary ``ViewPipeline`` (crops,
jitter...), which itself erodes shared factors (hue jitter changes the background); the
testbed's spec keeps it at 0.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from trainers.config import DatasetConfig, ViewsConfig
from trainers.data import DataBundle, load_fashion_mnist
from trainers.views import ViewPipeline

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

    ``subset`` / ``test_subset`` training / test images (default 20000 / 5000), each showing a
    distinct object of the matching Fashion-MNIST split; ``image_size`` is the canvas side.
    """
    design = design or DESIGN
    train_imgs, train_lbls, test_imgs, test_lbls = load_fashion_mnist(cfg)
    canvas = cfg.image_size or design.canvas
    gen = torch.Generator().manual_seed(SEED)
    n_train = min(cfg.subset or DEFAULT_TRAIN, len(train_imgs))
    n_test = min(cfg.test_subset or DEFAULT_TEST, len(test_imgs))
    train, test = make_assets(train_imgs[:n_train], canvas, design), make_assets(test_imgs[:n_test], canvas, design)
    ftr, fte = draw_factors(n_train, design, gen), draw_factors(n_test, design, gen)
    train_y = torch.from_numpy(train_lbls[:n_train].astype(np.int64))
    test_y = torch.from_numpy(test_lbls[:n_test].astype(np.int64))
    return DataBundle(
        train_x=render_factors(ftr, train),
        train_y=train_y,
        test_x=render_factors(fte, test),
        test_y=test_y,
        name="infomin_toy",
        num_classes=10,
        factors={
            "class": (train_y, test_y),
            "background": (ftr.background, fte.background),
            "position": (ftr.position, fte.position),
        },
        extras={  # what ToyPairs needs to re-render training images
            **train,  # bank uint8 [M,1,o,o], noise, placements, palette, bg_jitter
            "bank_labels": train_y.clone(),
            "obj": ftr.obj,
            "background": ftr.background,
            "bg_rgb": ftr.bg_rgb,
            "texture": ftr.texture,
            "position": ftr.position,
        },
    )


# --------------------------------------------------------------------------- view pairs


class ToyPairs:
    """Pairs of views that share exactly the factors in ``views.shared`` (None: all of them).

    Everything runs on the data's device as batched tensor ops; the random draws come from
    torch's global RNG, so a Trainer's seed makes them reproducible.
    """

    def __init__(self, data: DataBundle, views: ViewsConfig):
        if data.extras is None or "bank" not in data.extras:
            raise ValueError("ToyPairs needs a DataBundle from load_infomin_toy (extras['bank'] missing)")
        self.images = data.train_x
        self.extras = data.extras
        self.shared = frozenset(FACTORS if views.shared is None else views.shared)
        self.bg_jitter = float(data.extras["bg_jitter"])  # read once: no host sync in the step
        self.pipeline = ViewPipeline(views, 3) if views.strength > 0 else None

    def factors(self, idx: Tensor) -> ToyFactors:
        """The factors of training images ``idx`` (view 1)."""
        e = self.extras
        return ToyFactors(obj=e["obj"][idx], background=e["background"][idx], bg_rgb=e["bg_rgb"][idx],
                          texture=e["texture"][idx], position=e["position"][idx])

    def second_view_factors(self, idx: Tensor) -> ToyFactors:
        """View 2's factors: view 1's where shared, fresh uniform draws where not."""
        f, e, dev, n = self.factors(idx), self.extras, idx.device, idx.shape[0]
        if "class" not in self.shared:  # another object of the bank, whatever its class
            m = e["bank"].shape[0]
            f.obj = (f.obj + torch.randint(1, max(m, 2), (n,), device=dev)) % m
        if "background" not in self.shared:
            f.background = torch.randint(0, e["palette"].shape[0], (n,), device=dev)
            f.bg_rgb = jittered_colours(f.background, e["palette"], self.bg_jitter)
            f.texture = torch.randint(0, e["noise"].shape[0], (n,), device=dev)
        if "position" not in self.shared:
            f.position = torch.randint(0, e["placements"].shape[0], (n,), device=dev)
        return f

    def __call__(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        """Float views [B,3,S,S] in [0,1] of training images ``idx`` (a LongTensor on the device)."""
        v1 = self.images[idx].float().div_(255)
        v2 = render_factors(self.second_view_factors(idx), self.extras).float().div_(255)
        if self.pipeline is not None:
            v1, v2 = self.pipeline.view(v1)[0], self.pipeline.view(v2)[0]
        return v1, v2


def n_values(data: DataBundle, factor: str) -> int:
    """How many values a factor takes (10 classes, the palette's colours, the placements)."""
    e = data.extras
    return {"class": 10, "background": e["palette"].shape[0], "position": e["placements"].shape[0]}[factor]
