"""View-pair sources: how the two views of an image are made (``views.pairs``).

``build_pairs(cfg, data)`` is the one place a source is built from the config; the training
step, the view-MI measurement, the view grids and the throughput benchmark all call what it
returns (``base.PairSource``), so they can never disagree about what a trial's views are.
"""

from __future__ import annotations

from torch import Tensor

from trainers.config import TrainConfig
from trainers.data.bundle import DataBundle
from trainers.errors import SpecError
from trainers.pairs.base import Identity, PairSource, Relation
from trainers.pairs.channels import ColourChannels
from trainers.pairs.frequency import FrequencyBands
from trainers.pairs.patches import Patches
from trainers.pairs.toy import ToyRerender
from trainers.views import ViewPipeline

__all__ = ["PairSource", "build_pairs", "relation_for"]


def relation_for(cfg: TrainConfig) -> Relation:
    """The relation of ``views.pairs`` with its knobs."""
    v = cfg.views
    source = v.source(cfg.dataset.name)
    if source == "patches":
        return Patches(v.patch_size, v.patch_distance)
    if source == "channels":
        return ColourChannels(v.color_space)
    if source == "frequency":
        return FrequencyBands(v.frequency_cutoff, v.frequency_gap)
    return Identity()


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
    source = cfg.views.source(cfg.dataset.name)
    second = ToyRerender(data, cfg.views.shared) if source == "toy" else None
    return PairSource(data.train_x, build_augmentation(cfg, data.train_x), relation_for(cfg), second, name=source)
