"""Where a search writes, in one place: every path absolute, derived from ``output.root``.

Ray needs an absolute storage path (a relative one would land under ``~/ray_results``), and the
MLflow UI command we print must work from any directory, so nothing here is relative.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from analysis.store import lock_file, report_dir, state_file
from search.spec import Spec


@dataclass(frozen=True)
class Paths:
    root: Path
    experiment: str

    @property
    def experiment_dir(self) -> Path:
        return self.root / self.experiment

    @property
    def ray_storage(self) -> Path:
        """``storage_path`` given to Ray; the Tune experiment lives in ``ray_experiment``."""
        return self.experiment_dir / "ray"

    @property
    def ray_experiment(self) -> Path:
        return self.ray_storage / self.experiment

    @property
    def state_file(self) -> Path:
        """Which MLflow parent run and spec this experiment directory belongs to (see run.py)."""
        return state_file(self.root, self.experiment)

    @property
    def lock_file(self) -> Path:
        return lock_file(self.root, self.experiment)

    @property
    def mi_cache(self) -> Path:
        """View-MI measurements shared by the trials (``search/micache.py``)."""
        return self.experiment_dir / "mi_cache"

    @property
    def report_dir(self) -> Path:
        return report_dir(self.root, self.experiment)

    @property
    def mlartifacts(self) -> Path:
        return self.root / "mlartifacts"


def paths_for(spec: Spec, cwd: Path | None = None) -> Paths:
    root = Path(spec.output.root).expanduser()
    if not root.is_absolute():
        root = (cwd or Path.cwd()) / root
    return Paths(root=root.resolve(), experiment=spec.experiment)
