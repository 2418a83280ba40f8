"""The default view family: each view is one whole draw of the augmentation (SimCLR's views).

It has no knobs of its own: ``views.strength``, the pipeline's knobs and ``views.stages`` decide
what the two draws share.
"""

from __future__ import annotations

from typing import Literal

from trainers.pairs.family import PairFamily


class AugmentFamily(PairFamily):
    """``views.pairs: augment``: two independent draws of the augmentation, nothing else."""

    kind: Literal["augment"] = "augment"


FAMILY = AugmentFamily
