"""The GPU check: one command that answers, in under 8 minutes on one GPU, what no CPU can.

1. learning: a few hundred SimCLR steps on this device learn (the loss falls, validation kNN
   above chance);
2. sources: every view source (augment, patches, frequency, channels on 3-channel data, toy, learned,
   and augment with the Kornia stages RandomErasing and auto.RandAugment): the views alone, the
   model-only step and the full step, eager and compiled, views compiled with and without CUDA
   graphs;
3. sharing: 1, 2 and 4 training processes on the one device, images/s in total;
4. ring: SimCLR uniform against ring [0.01, 0.10] through ``python -m trainers.train`` (no Ray),
   ResNet-18 with the CIFAR stem on Fashion-MNIST, 2+ seeds per arm, as many epochs as the time
   left allows; ring - uniform with its 95% CI, validation and test, nothing selected.

Every figure goes to ``OUT/gpu_check.json`` (rewritten after each section, so a run stopped by
a timeout keeps what it finished), the ring's spec to ``OUT/ring_spec.yaml``, the table to
``OUT/console.txt``. Needs only PyTorch, Kornia and the trainers' own dependencies (no Ray, no
MLflow). ``--tiny`` runs every section at toy sizes in a minute or two: the CPU dry run in CI.

    python benchmarks/gpu_check.py --out runs/gpu_check                     # on a GPU, all defaults
    python benchmarks/gpu_check.py --out /tmp/gc --tiny --device cpu       # the CPU dry run
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import tempfile
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from benchmarks.gpucheck import learning, ring, sharing, sources
from benchmarks.gpucheck.common import (
    GPU,
    TINY,
    BadInput,
    Clock,
    check_fashion_mnist,
    dataset_section,
    fashion_mnist_root,
    load_bundle,
    save_bundle,
    tinted,
)
from trainers.data import DatasetError

DEFAULT_DATA = "/usr/share/datasets/fashion-mnist"
CIFAR_FOLDER = "cifar-10-batches-py"
RESERVE_S = 15.0  # kept free at the end: the last JSON, the table


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path, help="folder for gpu_check.json, ring_spec.yaml, console.txt")
    p.add_argument("--data", default=DEFAULT_DATA, type=Path, help="folder holding the four Fashion-MNIST IDX files")
    p.add_argument("--cifar", type=Path, help=f"folder holding {CIFAR_FOLDER}/ (else 3-channel data is tinted "
                   "Fashion-MNIST)")
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--tiny", action="store_true", help="toy sizes: a CPU dry run in a minute or two")
    p.add_argument("--minutes", type=float, help="the whole run's budget (default 7.5; --tiny 3)")
    p.add_argument("--sources-minutes", type=float, help="the sources section's share (default 3.5; --tiny 1)")
    p.add_argument("--seeds", type=int, default=2, help="ring runs per arm (at least 2)")
    return p.parse_args(argv)


def check_input(args: argparse.Namespace) -> torch.device:
    """Every refusal happens here, before anything is created."""
    if args.device == "cuda" and not torch.cuda.is_available():
        raise BadInput("--device cuda: torch sees no CUDA device on this machine; the check does not fall back to "
                       "the CPU (use --tiny --device cpu for the dry run)")
    if args.seeds < 2:
        raise BadInput(f"--seeds: {args.seeds}; the ring's confidence interval needs at least 2 seeds per arm")
    for name in ("minutes", "sources_minutes"):
        value = getattr(args, name)
        if value is not None and not 0 < value <= 60:
            raise BadInput(f"--{name.replace('_', '-')}: {value}; give minutes in (0, 60]")
    check_fashion_mnist(args.data)
    if args.cifar is not None and not (args.cifar / CIFAR_FOLDER).is_dir():
        raise BadInput(f"--cifar: {args.cifar} holds no {CIFAR_FOLDER}/")
    if args.out.exists() and not args.out.is_dir():
        raise BadInput(f"--out: {args.out} exists and is not a folder")
    return torch.device(args.device)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"


class Report:
    """The JSON written after every section, and the console lines kept for console.txt."""

    def __init__(self, out: Path, meta: dict):
        self.out, self.data, self.lines = out, {"meta": meta}, []

    def log(self, line: str) -> None:
        print(line, file=sys.stderr, flush=True)
        self.lines.append(line)

    def section(self, name: str, fn) -> dict:
        self.log(f"[{name}]")
        try:
            result = {"status": "ok", "reason": None, **fn()}
        except Exception as err:  # noqa: BLE001 - a failed section is recorded; the others still run
            traceback.print_exc()
            result = {"status": "error", "reason": f"{type(err).__name__}: {err}"}
            self.log(f"  failed: {result['reason']}")
        self.data[name] = result
        self.write()
        return result

    def write(self) -> None:
        tmp = self.out / "gpu_check.json.tmp"
        tmp.write_text(json.dumps(self.data, indent=2))
        tmp.replace(self.out / "gpu_check.json")
        (self.out / "console.txt").write_text("\n".join(self.lines) + "\n")


def prepare_data(args, sizes, device, work: Path) -> tuple[Path, dict]:
    """The Fashion-MNIST root the trainers read, and the three bundles the sources use (on ``device``,
    and saved for child processes): (bundle, saved path, what it is)."""
    root = fashion_mnist_root(args.data, work)
    gray = load_bundle(dataset_section("fashion_mnist", root, sizes, sizes.n_images, 1000))
    if args.cifar is not None:
        rgb = load_bundle(dataset_section("cifar10", args.cifar, sizes, sizes.n_images, 1000))
        rgb_what = f"CIFAR-10 from {args.cifar}, resized to {sizes.image_size} px"
    else:
        rgb = tinted(gray)
        rgb_what = "tinted Fashion-MNIST (no CIFAR given): per-image background and foreground colours"
    toy = load_bundle(dataset_section("infomin_toy", root, sizes, sizes.n_images, 1000))
    described = {"gray": (gray, f"Fashion-MNIST from {args.data}, {sizes.image_size} px"), "rgb": (rgb, rgb_what),
                 "toy": (toy, f"infomin_toy rendered from Fashion-MNIST, {sizes.image_size} px")}
    bundles = {}
    for kind, (bundle, what) in described.items():
        path = work / f"{kind}.pt"
        save_bundle(bundle, path)
        bundles[kind] = (bundle.to(device), path, what)
    return root, bundles


def per_process_rate(share: dict, runs: int) -> float | None:
    """The sharing section's per-process rate at the count closest to ``runs`` processes."""
    done = {int(k): v for k, v in share.get("processes", {}).items() if v["status"] == "ok"}
    if not done:
        return None
    count = min(done, key=lambda c: (abs(c - runs), -c))
    return done[count]["total_imgs_per_s"] / count


def build_meta(args, sizes, device: torch.device, minutes: float, sources_minutes: float) -> dict:
    on_cpu = device.type == "cpu"
    return {
        "device": device.type, "device_name": device_name(device), "torch": torch.__version__,
        "kornia": __import__("kornia").__version__, "python": platform.python_version(), "tiny": args.tiny,
        "started_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "budget_minutes": minutes,
        "sources_minutes": sources_minutes, "seeds": args.seeds, "sizes": sizes.as_dict(), "argv": sys.argv[1:],
        "bf16_autocast": not on_cpu, "channels_last": True, "compile_backend": "aot_eager" if on_cpu else "inductor",
        "compile_note": ("on the CPU the views of one source are compiled with the aot_eager backend (tracing and "
                         "autograd, no code generation: inductor takes minutes on this CPU) and the model is not "
                         "compiled") if on_cpu else "inductor; views with CUDA graphs as trainer.compile_views",
    }


def run_sections(report: Report, args, sizes, device: torch.device, clock: Clock, root: Path, bundles: dict,
                 work: Path) -> None:
    on_cpu = device.type == "cpu"
    report.section("learning", lambda: learning.measure(bundles["gray"][0], sizes, device))
    deadline = clock.elapsed() + 60 * report.data["meta"]["sources_minutes"]
    compile_sources = ("augment_random_erasing",) if on_cpu else tuple(sources.SOURCES)
    report.section("sources", lambda: {"by_source": sources.measure_all(
        bundles, sizes, device, clock, deadline, compile_sources, report.data["meta"]["compile_backend"],
        compile_model=not on_cpu, log=report.log)})
    # on the GPU the ring needs what is left; the dry run must finish every section however busy the CPU
    share_deadline = (clock.seconds - RESERVE_S if args.tiny
                      else clock.elapsed() + len(sizes.share_procs) * (sizes.share_seconds + 30))
    share = report.section("sharing", lambda: sharing.measure(bundles["gray"][1], sizes, device, clock,
                                                              share_deadline, log=report.log))
    report.section("ring", lambda: ring.measure(
        root, sizes, device.type, args.seeds, clock, clock.seconds - RESERVE_S,
        per_process_rate(share, 2 * args.seeds), work, args.out, args.tiny, log=report.log))


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        device = check_input(args)
    except BadInput as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    sizes = TINY if args.tiny else GPU
    minutes = args.minutes or (3.0 if args.tiny else 7.5)
    clock = Clock(60 * minutes)
    meta = build_meta(args, sizes, device, minutes, args.sources_minutes or (1.0 if args.tiny else 3.5))
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        work = Path(tmp)
        try:
            root, bundles = prepare_data(args, sizes, device, work)
        except DatasetError as err:  # a file that is there but unreadable: refused before --out is made
            links = str(work / "fmnist" / "FashionMNIST" / "raw")  # name the user's folder, not the links
            print(f"error: --data: {str(err).replace(links, str(args.data))}", file=sys.stderr)
            return 2
        meta["data"] = {kind: what for kind, (_, _, what) in bundles.items()}
        args.out.mkdir(parents=True, exist_ok=True)
        report = Report(args.out, meta)
        report.write()
        run_sections(report, args, sizes, device, clock, root, bundles, work)
    meta["seconds_total"] = clock.elapsed()
    print_summary(report)
    report.write()
    failed = [k for k, v in report.data.items() if k != "meta" and v.get("status") != "ok"]
    return 1 if failed else 0


def print_summary(report: Report) -> None:
    d = report.data
    report.log(f"\n{d['meta']['device_name']} | torch {d['meta']['torch']} | {d['meta']['seconds_total']:.0f} s")
    if d.get("sources", {}).get("status") == "ok":
        report.log("| source | views eager | views compiled (graphs / none) | full/model eager | "
                   "full/model compiled (graphs / none) |\n|---|---|---|---|---|")
        for name, s in d["sources"]["by_source"].items():
            m = s["measurements"]
            report.log(f"| {name} | {_ips(m['views_eager'])} | {_ips(m['views_compiled_graphs'])} / "
                       f"{_ips(m['views_compiled_no_graphs'])} | {_share(m['full_step_eager'])} | "
                       f"{_share(m['full_step_compiled_graphs'])} / {_share(m['full_step_compiled_no_graphs'])} |")
    if d.get("learning", {}).get("status") == "ok":
        ln = d["learning"]
        report.log(f"learning: loss {ln['loss_first']:.3f} -> {ln['loss_last']:.3f}, val kNN {ln['val_knn_before']:.3f}"
                   f" -> {ln['val_knn_after']:.3f} (chance {ln['chance']:.2f}): {'passed' if ln['passed'] else 'FAILED'}")
    if d.get("ring", {}).get("status") == "ok":
        for metric, c in d["ring"]["comparison"].items():
            diff = c["ring_minus_uniform"]
            lo, hi = diff["ci95"]
            ci = f"[{100 * lo:+.2f}, {100 * hi:+.2f}]" if lo is not None else "n/a"
            mean = f"{100 * diff['mean']:+.2f}" if diff["mean"] is not None else "n/a"
            report.log(f"ring - uniform, {metric}: {mean} points, 95% CI {ci} ({diff['n_pairs']} seed pairs, "
                       f"{d['ring']['epochs']} epochs)")


def _ips(rec: dict) -> str:
    return f"{rec['imgs_per_s']:,.0f}" if rec["status"] == "ok" else rec["status"]


def _share(rec: dict) -> str:
    return f"{100 * rec['share_of_model_step']:.1f}%" if rec["status"] == "ok" else rec["status"]


if __name__ == "__main__":
    sys.exit(main())
