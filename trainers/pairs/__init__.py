"""View-pair sources: how the two views of an image are made (``views.pairs``, one family each).

``build_pairs(cfg, data)`` is the one place a source is built from the config; the training
step, the view-MI measurement, the view grids and the throughput benchmark all call what it
returns (``base.PairSource``), so they can never disagree about what a trial's views are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trainers.errors import SpecError
from trainers.pairs.base import PairSource, Relation

if TYPE_CHECKING:  # the config imports the registry of this package: none of these at load time
    from torch import Tensor

    from trainers.config import TrainConfig
    from trainers.data.bundle import DataBundle
    from trainers.views import ViewPipeline

__all__ = ["PairSource", "build_pairs", "relation_for"]


def relation_for(cfg: TrainConfig) -> Relation:
    """The relation of the family in force (``views.pairs`` or the dataset's default)."""
    return cfg.views.family(cfg.dataset.name).relation()


class Augmentation:
    """The built-in pipeline, then the Kornia stages: one random view of each image of a float batch."""

    def __init__(self, pipeline: ViewPipeline | None, stages=None):
        self.pipeline, self.stages = pipeline, stages

    def __call__(self, x: Tensor) -> Tensor:
        if self.pipeline is not None:
            x = self.pipeline(x)
        if self.stages is not None:
            x = self.stages(x)
        return x


def build_augmentation(cfg: TrainConfig, images: Tensor) -> Augmentation | None:
    """None when there is nothing to do (strength 0, no stages): the views are then exact.

    Kornia stages are probed once on a tiny batch of the data's channels and size, so a stage
    that cannot work on these images (a colour op on grayscale) fails here, naming the stage,
    not at a random step of a training.
    """
    from trainers.views import ViewPipeline

    v = cfg.views
    channels = int(images.shape[1])
    pipeline = ViewPipeline(v, channels) if v.strength > 0 else None
    stages = None
    if v.stages:
        from trainers.stages import StageError, check_on, stage_entries

        try:
            stages = check_on(stage_entries(v.stages), channels, tuple(images.shape[-2:])).to(images.device)
        except StageError as err:
            raise SpecError(f"views.stages.{err.path}", err.reason) from None
    return Augmentation(pipeline, stages) if pipeline is not None or stages is not None else None


def build_pairs(cfg: TrainConfig, data: DataBundle) -> PairSource:
    """The trial's pair source over ``data``'s training images (on their device). Raises SpecError."""
    family = cfg.views.family(cfg.dataset.name)
    augment = build_augmentation(cfg, data.train_x)
    return PairSource(data.train_x, augment, family.relation(), family.second_view(data), name=family.kind)
