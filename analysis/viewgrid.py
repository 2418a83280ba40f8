"""A labelled picture of a trial's view pairs: original | view 1 | view 2, one row per image.

Drawn from the trial's own pair source, so what it shows is exactly what the encoder was given
(a patch, a colour-channel group, a frequency band, a re-rendered toy image). The title names
the source and the knob values that make this trial's views differ from the others'.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor


def _displayable(v: Tensor) -> Tensor:
    """[C,H,W] -> [H,W,3] in [0,1]: a view with one non-zero channel is shown in grey."""
    live = [c for c in range(v.shape[0]) if bool(v[c].abs().amax() > 0)]
    if v.shape[0] == 1 or len(live) == 1:
        v = v[live[0] if live else 0 : (live[0] if live else 0) + 1]
        return v.expand(3, -1, -1).permute(1, 2, 0).clamp(0, 1)
    return v[:3].permute(1, 2, 0).clamp(0, 1)


def draw_pairs(source: Any, n: int = 6) -> tuple[Tensor, Tensor, Tensor]:
    """(originals, view 1, view 2) of the first ``n`` training images, under a forked RNG so that
    drawing the grid does not change a training's random stream."""
    images = source.images
    idx = torch.arange(min(n, images.shape[0]), device=images.device)
    devices = [images.device] if images.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        v1, v2 = source(idx, True)
    return images[idx].float().div(255).cpu(), v1.float().cpu(), v2.float().cpu()


def save_view_grid(source: Any, path: str | Path, caption: str, n: int = 6) -> Path:
    """Write the labelled PNG; ``caption`` is printed as the title (source and knob values)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    originals, v1, v2 = draw_pairs(source, n)
    rows = originals.shape[0]
    fig, axes = plt.subplots(rows, 3, figsize=(4.2, 1.3 * rows + 0.7), dpi=100, squeeze=False)
    for r in range(rows):
        for c, (label, batch) in enumerate((("original", originals), ("view 1", v1), ("view 2", v2))):
            ax = axes[r][c]
            ax.imshow(_displayable(batch[r]).numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(label, fontsize=9)
    fig.suptitle(caption, fontsize=8, wrap=True)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
