"""The stages as one module: built once per trial, probed on the data's shape, applied to a batch."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Sequence

import torch
from torch import Tensor

from trainers.stages.arguments import build_stage
from trainers.stages.entries import stage_entries
from trainers.stages.errors import StageError
from trainers.stages.names import augmentation_bases

__all__ = ["Stages", "check_on"]


class Stages(torch.nn.Module):
    """The extra stages of a spec, applied in order to a float ``[B, C, H, W]`` batch in ``[0, 1]``.

    Built from ``[(name, kwargs), ...]`` (see ``stage_entries``); build errors are
    :class:`StageError` with the stage's ``index``. Calling it returns a batch of the same shape,
    clamped to ``[0, 1]`` (after every stage, so each stage sees valid images; with no stages the batch
    comes back as it is). Each stage draws its own per-sample random parameters from torch's global RNG;
    ``.to(device)`` makes kornia draw them on that device (else on the CPU, then copied over).
    """

    def __init__(self, entries: Sequence[tuple[str, dict]] = ()):
        super().__init__()
        self.names: list[str] = []
        mods = []
        for i, (name, kwargs) in enumerate(entries):
            try:
                mods.append(build_stage(name, kwargs))
            except StageError as e:
                raise e.at(i) from e.__cause__
            self.names.append(name)
        self.stages = torch.nn.ModuleList(mods)

    @classmethod
    def from_yaml(cls, raw: object) -> Stages:
        """Stages from the raw YAML list (shape checked by ``stage_entries``)."""
        return cls(stage_entries(raw))

    def __len__(self) -> int:
        return len(self.stages)

    def __bool__(self) -> bool:
        return len(self.stages) > 0

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or not x.is_floating_point():
            raise ValueError(f"stages take a float [B, C, H, W] batch, got {tuple(x.shape)} {x.dtype}")
        for i, (name, stage) in enumerate(zip(self.names, self.stages)):
            y = stage(x)
            if y.shape != x.shape:
                raise StageError(
                    name, f"changed the batch shape from {tuple(x.shape)} to {tuple(y.shape)}; stages must keep it", i
                )
            x = y.clamp(0.0, 1.0)
        return x

    def probe(
        self, channels: int, size: int | tuple[int, int], batch: int = 4, device: torch.device | str | None = None
    ) -> None:
        """Run every stage on a tiny random ``[batch, channels, H, W]`` batch; raise if one cannot run on it.

        Each stage runs with every probability inside it forced to 1, so an op that applies only sometimes
        is still exercised; an auto-augment policy additionally runs each of its sub-policies, since it
        draws only a few per call (RandAugment's "color" op, for one, needs 3 channels). Raises
        :class:`StageError` (key: the stage name, with its index) for a stage that fails on such a batch
        (e.g. a colour op on 1 channel) or changes its shape. Torch's global RNG is left as it was.
        ``device``: where the batch lives (default: the stages' device, else the CPU).
        """
        h, w = (size, size) if isinstance(size, int) else size
        device = torch.device(device) if device is not None else self._device()
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.manual_seed(0)
            x = torch.rand(batch, channels, h, w, device=device)
            for i, (name, stage) in enumerate(zip(self.names, self.stages)):
                with _all_applied(stage):
                    x = _probe_one(name, i, stage, x, f"a {channels}-channel {h}x{w} batch").clamp(0.0, 1.0)

    def _device(self) -> torch.device:
        for t in (*self.parameters(), *self.buffers()):
            return t.device
        for m in self.modules():
            if isinstance(getattr(m, "device", None), torch.device):
                return m.device
        return torch.device("cpu")

    def extra_repr(self) -> str:
        return ", ".join(self.names)


def _probe_one(name: str, index: int, stage: torch.nn.Module, x: Tensor, what_batch: str) -> Tensor:
    """Run ``stage`` (and each sub-policy of a policy) on ``x``; returns the stage's output."""
    out = x
    for what, module in _probe_targets(stage):
        try:
            y = module(x)
        except Exception as exc:
            raise StageError(name, f"{what}fails on {what_batch}: {type(exc).__name__}: {exc}", index) from exc
        if not isinstance(y, Tensor) or y.shape != x.shape:
            shape = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
            raise StageError(name, f"{what}changes a {tuple(x.shape)} batch to {shape}; stages must keep it", index)
        if module is stage:
            out = y
    return out


@contextlib.contextmanager
def _all_applied(stage: torch.nn.Module):
    """Within: every kornia augmentation inside ``stage`` applies to every sample (``p = p_batch = 1``)."""
    saved = [(m, m.p, m.p_batch) for m in stage.modules() if isinstance(m, augmentation_bases())]
    try:
        for m, _, _ in saved:
            m.p, m.p_batch = 1.0, 1.0
        yield
    finally:
        for m, p, p_batch in saved:
            m.p, m.p_batch = p, p_batch


def _probe_targets(stage: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """What to run to probe ``stage``: the stage, then each sub-policy of an auto-augment policy."""
    from kornia.augmentation.auto import PolicyAugmentBase

    targets = [("", stage)]
    if isinstance(stage, PolicyAugmentBase):
        for j, sub in enumerate(stage.children()):
            ops = "+".join(type(getattr(op, "op", op)).__name__ for op in sub.children()) or type(sub).__name__
            targets.append((f"sub-policy {j} ({ops}) ", sub))
    return targets


def check_on(entries: Sequence[tuple[str, dict]] | Stages, channels: int, size: int | tuple[int, int]) -> Stages:
    """Build the stages (unless given built) and :meth:`Stages.probe` them; returns the :class:`Stages`."""
    stages = entries if isinstance(entries, Stages) else Stages(entries)
    stages.probe(channels, size)
    return stages
