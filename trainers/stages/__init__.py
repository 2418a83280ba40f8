"""Extra view stages from the spec: ``kornia.augmentation`` classes named in YAML, run on the batch.

A spec lists the stages under ``views.stages``, each one mapping ``{ClassName: {arg: value}}``::

    views:
      stages:
        - RandomErasing: {p: 0.5, scale: [0.02, 0.2]}
        - RandomSharpness: {sharpness: 0.5, p: 0.5}
        - auto.RandAugment: {n: 2, m: 10}

They run in order on the whole float ``[B, C, H, W]`` batch in ``[0, 1]``, after the built-in view
ops; each stage draws its own per-sample random parameters (kornia does that).

Accepted names (``names.py``) are

- concrete 2D image augmentations: subclasses of ``kornia.augmentation.AugmentationBase2D``, except
  the exported abstract bases, ``Normalize``/``Denormalize`` (not augmentations: their output leaves
  ``[0, 1]``) and ``RandomDissolving`` (it loads a Stable Diffusion model);
- the auto-augment policies under ``auto.``: subclasses of
  ``kornia.augmentation.auto.PolicyAugmentBase`` (``AutoAugment``, ``RandAugment``,
  ``TrivialAugment``).

Refused are containers (``AugmentationSequential``, ``ImageSequential``, ``VideoSequential``,
``PatchSequential``, the dispatchers, ``auto.PolicySequential``), 3D/volumetric augmentations
(``AugmentationBase3D``) and mix augmentations (``MixAugmentationBaseV2``: ``RandomMixUpV2``,
``RandomCutMixV2``, ``RandomMosaic``, ``RandomJigsaw``, ``PatchMix``, ``RandomTransplantation``),
which take labels or masks or change what a batch means.

The jobs, one module each:

- ``names``: a stage name -> its class (Kornia's public API only);
- ``arguments``: a stage's arguments checked against its constructor (pydantic over the
  signature's annotations), and the one place a stage is built (``build_stage``);
- ``entries``: the YAML list's shape and the spec-time check (``validate_stages``, run by the
  config, once per distinct entry: no module is built);
- ``module``: :class:`Stages`, built once per trial (by the pair source) and probed there on a
  tiny batch of the data's channels and size (``check_on``), then applied to every batch.

Errors are :class:`StageError` with a dotted ``key`` relative to the stage entry (``RandomErasing``,
``RandomErasing.scale``) or to the stage list (``"0"``), and, where known, the stage's ``index``
in the list. ``err.path`` joins the two; a caller prefixes it with where the list sits in the spec
(``views.stages.``).

Note: kornia augmentations are not free of host syncs and Python branching, unlike the built-in
view ops (see ``trainers/views.py``): stages cost what kornia costs.
"""

from trainers.stages.arguments import build_stage, check_kwargs
from trainers.stages.entries import MAX_STAGES, stage_entries, validate_stages
from trainers.stages.errors import StageError
from trainers.stages.module import Stages, check_on
from trainers.stages.names import accepted_stage_names, resolve_stage_class, stage_name

__all__ = [
    "MAX_STAGES",
    "StageError",
    "Stages",
    "accepted_stage_names",
    "build_stage",
    "check_kwargs",
    "check_on",
    "resolve_stage_class",
    "stage_entries",
    "stage_name",
    "validate_stages",
]
