"""One contrastive training, driven epoch by epoch.

``Trainer`` knows nothing about being searched: whoever drives it (the CLI below, a Ray Tune
trial, a benchmark) calls ``train_epoch`` / ``evaluate`` or ``fit(on_epoch=...)`` and decides
what to do with the metrics. State is saved at epoch boundaries so a driver can resume.

The step keeps everything on the device: the dataset is a uint8 tensor there, a batch is an
index gather, views are made for the whole batch at once, and the loss is accumulated as a
tensor, so the only host synchronisation is once per epoch.

    python -m trainers.train spaces/augment_strength.yaml --set trainer.epochs=1
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from trainers.config import TrainConfig
from trainers.data import DataBundle, DatasetError, load_data
from trainers.errors import SpecError
from trainers.evaluate import extract_features, knn_accuracy, linear_probe
from trainers.methods import build_method
from trainers.models import build_encoder
from trainers.objectives import make_schedule
from trainers.pairs import build_pairs
from trainers.results import (
    DIVERGED,
    EPOCH,
    EPOCHS,
    IMGS_PER_S,
    RING_LOWER,
    RING_UPPER,
    SECONDS,
    TRAIN_LOSS,
    VAL_KNN_ACC,
    EpochResult,
    Evaluation,
    FitResult,
    factor_probe,
    probe_metric,
)
from trainers.specfile import load_train_config

if TYPE_CHECKING:
    from trainers.adversary import ViewAdversary


def lr_factor(step: int, total: int, warmup: int, kind: str) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based) of ``total``.

    A pure function of the step rather than a stateful torch scheduler, so a resumed training
    lands on exactly the rate it would have had.
    """
    if kind == "constant":
        return 1.0
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


class DeviceUnavailable(Exception):
    """``trainer.device: cuda`` on a machine without CUDA: an error, not a silent CPU run."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailable("trainer.device: 'cuda' was asked for but torch sees no CUDA device; use 'auto' or 'cpu'")
    return torch.device(name)


class Trainer:
    def __init__(self, cfg: TrainConfig, data: DataBundle | None = None):
        self.cfg = cfg
        self.device = resolve_device(cfg.trainer.device)
        if cfg.trainer.threads and self.device.type == "cpu":
            torch.set_num_threads(cfg.trainer.threads)
        torch.manual_seed(cfg.trainer.seed)
        self.data = (data if data is not None else load_data(cfg.dataset)).to(self.device)
        n = self.data.train_x.shape[0]
        if n < cfg.trainer.batch_size:
            raise SpecError("trainer.batch_size", f"{cfg.trainer.batch_size} exceeds the {n} training images")
        self.pairs = build_pairs(cfg, self.data)
        self.make_pairs = self.pairs.__call__
        if cfg.trainer.compile_views:  # removes the views' kernel-launch overhead, the GPU bottleneck
            self.compile_views("reduce-overhead" if self.device.type == "cuda" else None)
        self.encoder = build_encoder(cfg.model, self.pairs.channels, self.device, cfg.trainer.channels_last)
        self.method = build_method(self.encoder, cfg.method, n).to(self.device)
        if cfg.trainer.compile:  # in place: the method calls this module and its state_dict keys stay the same
            self.encoder.compile()
        self.optimizer = self._optimizer()
        self.adversary = self._adversary()
        self.steps_per_epoch = n // cfg.trainer.batch_size
        if cfg.trainer.max_steps:
            self.steps_per_epoch = min(self.steps_per_epoch, cfg.trainer.max_steps)
        neg = cfg.negatives
        anneal_epochs = neg.anneal_epochs or cfg.trainer.epochs
        self.schedule = make_schedule(
            neg.lower, neg.upper, neg.anneal, neg.anneal_start, anneal_epochs * self.steps_per_epoch
        )
        self.total_steps = cfg.trainer.epochs * self.steps_per_epoch
        self.warmup_steps = round(cfg.trainer.warmup_epochs * self.steps_per_epoch)
        self.epoch = 0
        self.global_step = 0
        self.history: list[dict] = []

    def _optimizer(self) -> torch.optim.Optimizer:
        t = self.cfg.trainer
        params = [p for p in self.encoder.parameters() if p.requires_grad]
        if t.optimizer == "sgd":
            return torch.optim.SGD(params, lr=t.lr, momentum=0.9, weight_decay=t.weight_decay)
        return torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay)

    def _adversary(self) -> ViewAdversary | None:
        """The view generator's trainer when the views are learned (``views.pairs: learned``), else None."""
        if self.pairs.learner is None:
            return None
        from trainers.adversary import ViewAdversary

        d = self.data
        knobs = self.cfg.views.family(self.cfg.dataset.name)
        return ViewAdversary(self.pairs.learner, knobs, self.encoder, d.train_y, d.num_classes, self.cfg.trainer.seed)

    # ------------------------------------------------------------------ training

    def _set_lr(self) -> None:
        """The step's learning rate, from the step count alone (a Python float: no device sync)."""
        t = self.cfg.trainer
        if t.lr_schedule == "constant":
            return
        factor = lr_factor(self.global_step, self.total_steps, self.warmup_steps, t.lr_schedule)
        for group in self.optimizer.param_groups:
            group["lr"] = t.lr * factor

    def compile_views(self, mode: str | None = None, backend: str = "inductor") -> None:
        """Make the views with ``torch.compile`` (``mode`` "reduce-overhead": CUDA graphs); the
        benchmarks compare the variants through this, as ``trainer.compile_views`` does."""
        self.make_pairs = torch.compile(self.pairs.__call__, mode=mode, backend=backend)

    def step(self, idx: torch.Tensor, views: tuple[torch.Tensor, torch.Tensor | None] | None = None) -> torch.Tensor:
        """One optimisation step on the training images ``idx``; the loss stays on the device (no sync).

        ``views`` skips making them: a benchmark times the model step alone through the same code.
        """
        lower, upper = self.schedule.bounds(self.global_step)
        self._set_lr()
        v1, v2 = views if views is not None else self.make_pairs(idx, self.method.views_per_step == 2)
        if self.cfg.trainer.channels_last:
            v1 = v1.contiguous(memory_format=torch.channels_last)
            v2 = v2.contiguous(memory_format=torch.channels_last) if v2 is not None else None
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            result = self.method.loss(v1, v2, idx, lower, upper)
        self.optimizer.zero_grad(set_to_none=True)
        if self.adversary is None:
            result.loss.backward()
        else:  # learned views: the generator ascends the loss the encoder descends
            self.adversary.backward(result.loss, self.encoder, v1, idx)
        self.optimizer.step()
        if self.adversary is not None:
            self.adversary.step()
        if result.after_step is not None:  # the method's queue, bank or EMA update
            result.after_step()
        self.global_step += 1
        return result.loss.detach()

    def train_epoch(self, progress: Callable[[int, float], None] | None = None) -> EpochResult:
        """One pass over the training set; metrics of the epoch (``diverged`` 1.0 on NaN/inf loss)."""
        self.method.train()
        bs = self.cfg.trainer.batch_size
        perm = torch.randperm(self.data.train_x.shape[0], device=self.device)
        total = torch.zeros((), device=self.device)
        start = time.perf_counter()
        for i in range(self.steps_per_epoch):
            total += self.step(perm[i * bs : (i + 1) * bs])
            if progress is not None:
                progress(i + 1, bs * (i + 1) / (time.perf_counter() - start))
        train_loss = (total / self.steps_per_epoch).item()  # the epoch's one host sync
        seconds = time.perf_counter() - start
        self.epoch += 1
        lower, upper = self.schedule.bounds(self.global_step - 1)
        metrics: EpochResult = {
            EPOCH: float(self.epoch),
            TRAIN_LOSS: train_loss,
            IMGS_PER_S: self.steps_per_epoch * bs / seconds,
            RING_LOWER: lower,
            RING_UPPER: upper,
            DIVERGED: 0.0 if math.isfinite(train_loss) else 1.0,
        }
        if self.cfg.evaluation.knn_every_epoch and metrics[DIVERGED] == 0.0:
            metrics[VAL_KNN_ACC] = self.monitor_knn()
        self.history.append(metrics)
        return metrics

    # ------------------------------------------------------------------ evaluation

    def features(self, images: torch.Tensor, encoder: torch.nn.Module | None = None) -> torch.Tensor:
        """Frozen features of un-augmented images, as the pair source presents a whole image."""
        return extract_features(encoder or self.encoder, images, transform=self.pairs.eval_view)

    def untrained_encoder(self) -> torch.nn.Module:
        """A fresh encoder of this training's architecture, initialised from ``trainer.seed`` alone
        (in a forked RNG): the floor the trained encoder's probes are a gain over."""
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(self.cfg.trainer.seed)
            return build_encoder(self.cfg.model, self.pairs.channels, self.device, self.cfg.trainer.channels_last)

    def monitor_knn(self) -> float:
        """kNN accuracy on bounded subsets of the training (bank) and validation (queries) images:
        cheap enough to run every epoch, and what the search and early stopping compare."""
        ev, d = self.cfg.evaluation, self.data
        tr, va = slice(0, ev.monitor_train), slice(0, ev.monitor_val)
        return knn_accuracy(self.features(d.train_x[tr]), d.train_y[tr], self.features(d.val_x[va]), d.val_y[va],
                            d.num_classes, ev.knn_k, ev.knn_t)

    def evaluate(self, encoder: torch.nn.Module | None = None) -> Evaluation:
        """Final kNN and linear probe, scored on the whole validation and the whole test split.

        Both read features of the training images as the bank / the probe's training set: the
        validation labels never train anything, so ``val_*`` is what selection reads, and the
        test split (``knn_acc``, ``linear_acc``) is only reported. ``encoder``: probe another
        encoder (the untrained one) with the same protocol.
        """
        ev, d = self.cfg.evaluation, self.data
        train_f, val_f, test_f = (self.features(x, encoder) for x in (d.train_x, d.val_x, d.test_x))
        out: dict[str, float] = {}
        for split, f, y in (("val", val_f, d.val_y), ("test", test_f, d.test_y)):
            out[probe_metric("knn", split)] = knn_accuracy(train_f, d.train_y, f, y, d.num_classes, ev.knn_k, ev.knn_t)
        probes = {None: (d.train_y, d.val_y, d.test_y), **(d.factors or {})}
        for factor, (train_y, val_y, test_y) in probes.items():  # the class probe, and one per known factor
            acc = linear_probe(train_f, train_y, {"val": (val_f, val_y), "test": (test_f, test_y)},
                               epochs=ev.linear_epochs, lr=ev.linear_lr, seed=ev.probe_seed)
            for split in ("val", "test"):
                name = probe_metric("linear", split) if factor is None else factor_probe(factor, split)
                out[name] = acc[split]
        return out  # type: ignore[return-value]  -- per-factor keys are beyond a TypedDict

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict:
        rng = {"cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "method": self.method.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch,
            "global_step": self.global_step,
            "history": self.history,
            "rng": rng,
            **({"views": self.adversary.checkpoint()} if self.adversary is not None else {}),
        }

    def load_state_dict(self, sd: dict) -> None:
        self.method.load_state_dict(sd["method"])
        self.optimizer.load_state_dict(sd["optimizer"])
        self.epoch, self.global_step, self.history = sd["epoch"], sd["global_step"], list(sd["history"])
        if self.adversary is not None:
            if "views" not in sd:
                raise ValueError("the checkpoint has no view generator, but this training learns its views")
            self.adversary.restore(sd["views"])
        torch.set_rng_state(sd["rng"]["cpu"])
        if "cuda" in sd["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(sd["rng"]["cuda"], self.device)

    def save_checkpoint(self, path: str | Path) -> None:
        torch.save(self.state_dict(), path)

    def load_checkpoint(self, path: str | Path) -> None:
        self.load_state_dict(torch.load(path, map_location=self.device, weights_only=True))

    # ------------------------------------------------------------------ driving

    def fit(self, on_epoch: Callable[[dict], bool | None] | None = None, progress: bool = False) -> FitResult:
        """Train the remaining epochs, then evaluate. ``on_epoch`` returning True stops early."""
        start = time.perf_counter()
        last: dict = {}
        while self.epoch < self.cfg.trainer.epochs:
            last = self.train_epoch(self._progress_bar() if progress else None)
            if progress:
                self._close_bar(last)
            if on_epoch is not None and on_epoch(last):
                break
            if last[DIVERGED]:
                break
        result: FitResult = {k: last.get(k, float("nan")) for k in (TRAIN_LOSS, IMGS_PER_S, DIVERGED)}  # type: ignore[misc]
        if not result[DIVERGED]:
            result.update(self.evaluate())
        result.update({EPOCHS: self.epoch, SECONDS: time.perf_counter() - start})
        return result

    def _progress_bar(self) -> Callable[[int, float], None]:
        from tqdm import tqdm

        self._bar = tqdm(total=self.steps_per_epoch, desc=f"epoch {self.epoch + 1}/{self.cfg.trainer.epochs}",
                         unit="step", file=sys.stderr, leave=True)

        def update(step: int, ips: float) -> None:
            self._bar.update(1)
            self._bar.set_postfix_str(f"{ips:,.0f} img/s")

        return update

    def _close_bar(self, metrics: dict) -> None:
        knn = f" val knn {metrics[VAL_KNN_ACC]:.3f}" if VAL_KNN_ACC in metrics else ""
        self._bar.set_postfix_str(f"loss {metrics[TRAIN_LOSS]:.3f}{knn} {metrics[IMGS_PER_S]:,.0f} img/s")
        self._bar.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainers.train", description="Train one configuration.")
    parser.add_argument("spec", help="YAML spec; search domains are replaced by their defaults")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        cfg = load_train_config(args.spec, args.overrides)
        trainer = Trainer(cfg)
    except (SpecError, DatasetError, DeviceUnavailable) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"training {cfg.method.name} on {cfg.dataset.name} ({trainer.data.train_x.shape[0]} images) "
          f"on {trainer.device}", file=sys.stderr)
    result = trainer.fit(progress=not args.quiet)
    print(json.dumps({k: (round(v, 5) if isinstance(v, float) else v) for k, v in result.items()}))
    return 0 if not result[DIVERGED] else 1


if __name__ == "__main__":
    sys.exit(main())
