"""The controlled InfoMin testbed: images whose generative factors are known, and view pairs that
share a chosen subset of them.

Why: InfoMin (Tian et al. 2020, their colourful-moving-MNIST experiment) claims that what the
two views *share* decides what a contrastive representation keeps. On natural images the
factors are unknown, so the claim can only be tested here, where every image is rendered from
three discrete factors and a linear probe per factor reads out what the encoder kept:

- ``class``: a Fashion-MNIST object (10 classes), downscaled to 20x20 (at a 32 px canvas) and
  pasted as a white-on-colour alpha mask (its grey level is the opacity);
- ``background``: one of 8 saturated colours evenly spaced in hue, each image's colour jittered
  by a little uniform noise (so the probe cannot read the id off one exact RGB value);
- ``position``: one of the 4 corners of a 2x2 grid of offsets (the object touches two canvas
  edges; neighbouring placements overlap by 8 px in the middle).

Factors are drawn independently and uniformly, seeded, so the dataset is deterministic.

``ToyPairs`` makes the training pairs: view 1 is the image itself, view 2 re-renders it keeping
each factor that ``views.shared`` lists and redrawing the others (class -> another object of the
bank, any class; background -> a random palette colour with fresh jitter; position -> a random
placement). With ``views.strength`` 0 nothing else differs between the views, so with every
factor shared the two views are the same image (the trivial end of the testbed). A strength
above 0 additionally passes both views through the ordinary ``ViewPipeline`` (crops, jitter...),
which itself destroys some of the shared factors (hue jitter changes the background); the
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
CANVAS = 32  # default canvas side; ``dataset.image_size`` overrides it
OBJECT_FRACTION = 20 / 32  # object side / canvas side
N_BACKGROUNDS = 8
SATURATION, VALUE = 0.85, 0.7  # palette colours: saturated, mid-bright, so a white object stands out
BG_JITTER = 0.04  # per-image, per-channel uniform noise on the background colour, in [0,1] units
SEED = 1234  # fixed: the dataset is a function of the config only


@dataclass
class ToyFactors:
    """The factors of a batch of renderings, on one device."""

    obj: Tensor  # int64 [B] index into the object bank
    background: Tensor  # int64 [B] palette index
    bg_rgb: Tensor  # float32 [B,3] the exact background colour in [0,1] (palette + jitter)
    position: Tensor  # int64 [B] placement index


# --------------------------------------------------------------------------- geometry and colours


def palette(n: int = N_BACKGROUNDS) -> Tensor:
    """``n`` colours evenly spaced in hue at fixed saturation and value, float [n,3] in [0,1]."""
    return torch.tensor([colorsys.hsv_to_rgb(i / n, SATURATION, VALUE) for i in range(n)], dtype=torch.float32)


def object_size(canvas: int) -> int:
    return max(4, round(canvas * OBJECT_FRACTION))


def placements(canvas: int) -> Tensor:
    """(row, col) offsets of the object's top-left corner for the 2x2 grid, int64 [4,2]."""
    far = canvas - object_size(canvas)
    return torch.tensor([[0, 0], [0, far], [far, 0], [far, far]], dtype=torch.int64)


def shrink_objects(images: np.ndarray, size: int) -> Tensor:
    """Fashion-MNIST uint8 [N,28,28] -> antialiased uint8 [N,1,size,size] (the object bank)."""
    x = torch.from_numpy(np.ascontiguousarray(images))[:, None].float()
    x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8)


def jittered_colours(ids: Tensor, colours: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Palette colour of each id plus uniform per-channel noise of +-BG_JITTER, float [B,3]."""
    noise = torch.rand(ids.shape[0], 3, generator=generator, device=ids.device) * 2 - 1
    return (colours.to(ids.device)[ids] + BG_JITTER * noise).clamp(0, 1)


# --------------------------------------------------------------------------- rendering


def paste(objects: Tensor, offsets: Tensor, canvas: int) -> Tensor:
    """Place each object [B,1,o,o] at its (row, col) offset on an empty canvas: uint8 [B,1,S,S].

    One advanced-indexing write for the whole batch (no per-image loop)."""
    b, _, o, _ = objects.shape
    out = objects.new_zeros(b, canvas, canvas)
    steps = torch.arange(o, device=objects.device)
    rows = (offsets[:, :1] + steps)[:, :, None]
    cols = (offsets[:, 1:] + steps)[:, None, :]
    out[torch.arange(b, device=objects.device)[:, None, None], rows, cols] = objects[:, 0]
    return out[:, None]


def render(objects: Tensor, bg_rgb: Tensor, offsets: Tensor, canvas: int) -> Tensor:
    """Alpha-composite white objects over flat backgrounds: uint8 [B,3,S,S].

    The object's grey level is its opacity. Quantised to uint8 so that a re-rendering with the
    same factors is bit-identical to the stored image."""
    alpha = paste(objects, offsets, canvas).float().div_(255)
    img = bg_rgb[:, :, None, None] * (1 - alpha) + alpha
    return img.mul_(255).round_().clamp_(0, 255).to(torch.uint8)


def render_factors(bank: Tensor, f: ToyFactors, canvas: int) -> Tensor:
    return render(bank[f.obj], f.bg_rgb, placements(canvas).to(bank.device)[f.position], canvas)


# --------------------------------------------------------------------------- dataset


def draw_factors(n_objects: int, gen: torch.Generator) -> ToyFactors:
    """Image i shows object i; background and position drawn uniformly and independently."""
    background = torch.randint(0, N_BACKGROUNDS, (n_objects,), generator=gen)
    position = torch.randint(0, 4, (n_objects,), generator=gen)
    return ToyFactors(
        obj=torch.arange(n_objects),
        background=background,
        bg_rgb=jittered_colours(background, palette(), gen),
        position=position,
    )


def _split(images: np.ndarray, labels: np.ndarray, n: int, canvas: int, gen: torch.Generator):
    bank = shrink_objects(images[:n], object_size(canvas))
    f = draw_factors(bank.shape[0], gen)
    return bank, torch.from_numpy(labels[:n].astype(np.int64)), f, render_factors(bank, f, canvas)


def load_infomin_toy(cfg: DatasetConfig) -> DataBundle:
    """Render the testbed from Fashion-MNIST (same search places and error as ``fashion_mnist``).

    Sizes: ``subset`` training / ``test_subset`` test images (default 20000 / 5000), each showing a
    distinct object of the matching Fashion-MNIST split; ``image_size`` is the canvas (default 32).
    """
    train_imgs, train_lbls, test_imgs, test_lbls = load_fashion_mnist(cfg)
    canvas = cfg.image_size or CANVAS
    gen = torch.Generator().manual_seed(SEED)
    n_train = min(cfg.subset or DEFAULT_TRAIN, len(train_imgs))
    n_test = min(cfg.test_subset or DEFAULT_TEST, len(test_imgs))
    bank, train_y, ftr, train_x = _split(train_imgs, train_lbls, n_train, canvas, gen)
    _, test_y, fte, test_x = _split(test_imgs, test_lbls, n_test, canvas, gen)
    return DataBundle(
        train_x=train_x,
        train_y=train_y,
        test_x=test_x,
        test_y=test_y,
        name="infomin_toy",
        num_classes=10,
        factors={
            "class": (train_y, test_y),
            "background": (ftr.background, fte.background),
            "position": (ftr.position, fte.position),
        },
        extras={
            "bank": bank,  # uint8 [M,1,o,o] training objects
            "bank_labels": train_y.clone(),  # int64 [M]
            "obj": ftr.obj,  # int64 [N] object of each training image
            "background": ftr.background,
            "bg_rgb": ftr.bg_rgb,
            "position": ftr.position,
            "palette": palette(),
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
        self.canvas = data.image_size
        self.shared = frozenset(FACTORS if views.shared is None else views.shared)
        self.pipeline = ViewPipeline(views, 3) if views.strength > 0 else None

    def factors(self, idx: Tensor) -> ToyFactors:
        """The factors of training images ``idx`` (view 1)."""
        e = self.extras
        return ToyFactors(obj=e["obj"][idx], background=e["background"][idx], bg_rgb=e["bg_rgb"][idx],
                          position=e["position"][idx])

    def second_view_factors(self, idx: Tensor) -> ToyFactors:
        """View 2's factors: view 1's where shared, fresh uniform draws where not."""
        f, e, dev = self.factors(idx), self.extras, idx.device
        n = idx.shape[0]
        obj, bg, bg_rgb, pos = f.obj, f.background, f.bg_rgb, f.position
        if "class" not in self.shared:  # another object of the bank, whatever its class
            m = e["bank"].shape[0]
            obj = (obj + torch.randint(1, max(m, 2), (n,), device=dev)) % m
        if "background" not in self.shared:
            bg = torch.randint(0, e["palette"].shape[0], (n,), device=dev)
            bg_rgb = jittered_colours(bg, e["palette"])
        if "position" not in self.shared:
            pos = torch.randint(0, 4, (n,), device=dev)
        return ToyFactors(obj=obj, background=bg, bg_rgb=bg_rgb, position=pos)

    def __call__(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        """Float views [B,3,S,S] in [0,1] of training images ``idx`` (a LongTensor on the device)."""
        v1 = self.images[idx].float().div_(255)
        v2 = render_factors(self.extras["bank"], self.second_view_factors(idx), self.canvas).float().div_(255)
        if self.pipeline is not None:
            v1, v2 = self.pipeline.view(v1)[0], self.pipeline.view(v2)[0]
        return v1, v2


def chance_level(factor: str) -> float:
    """Accuracy of guessing a factor's most common value (uniform factors)."""
    return {"class": 0.1, "background": 1 / N_BACKGROUNDS, "position": 0.25}[factor]


def redraw_rate(factor: str) -> float:
    """How often a redrawn factor's value differs from the original: 1 - 1/n for a uniform
    redraw (for class, approximately: the new object is any other object of the bank)."""
    return 1 - chance_level(factor)
