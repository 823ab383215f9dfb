"""The first release's flat module paths, still importable: each now lives in a subpackage.

``import captum_topgap.losses`` (and ``from captum_topgap.training import train`` …) resolve through a
finder that serves a module whose attributes come from the new homes, with a ``DeprecationWarning`` that
names them. The table is the migration guide (docs/architecture.md).

Example:
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     from captum_topgap.losses import ReFF, make_objective
    >>> ReFF.__module__, make_objective.__module__
    ('captum_topgap.train.losses', 'captum_topgap.train.objectives')
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings
from typing import Any

MOVED = {
    "captum_topgap.losses": ("captum_topgap.train.losses", "captum_topgap.train.objectives"),
    "captum_topgap.training": ("captum_topgap.train.loop", "captum_topgap.train.checkpoints",
                               "captum_topgap.evaluate.metrics"),
    "captum_topgap.distributed": ("captum_topgap._distributed",),
    "captum_topgap.metrics": ("captum_topgap.evaluate.metrics",),
    "captum_topgap.evaluation": ("captum_topgap.evaluate.heatmaps",),
    "captum_topgap.robustness": ("captum_topgap.evaluate.robustness",),
    "captum_topgap.shift": ("captum_topgap.evaluate.shift",),
    "captum_topgap.cli": ("captum_topgap.app.cli", "captum_topgap.app.commands"),
    "captum_topgap.report": ("captum_topgap.app.demo", "captum_topgap.app.report"),
    "captum_topgap.bench": ("captum_topgap.app.bench",),
    "captum_topgap.visualize": ("captum_topgap.app.visualize",),
    "captum_topgap.explain": ("captum_topgap.app.explain",),
    "captum_topgap.plots": ("captum_topgap.app.plots",),
}
"""Old module -> the modules that now hold its names, searched in order."""


class MovedModule(types.ModuleType):
    """A stand-in for a moved module: attribute lookups go to the new modules."""

    def __init__(self, name: str, homes: tuple[str, ...]) -> None:
        super().__init__(name, f"Moved to {', '.join(homes)}.")
        self.__homes = homes

    def __getattr__(self, attribute: str) -> Any:
        for home in self.__homes:
            module = importlib.import_module(home)
            if hasattr(module, attribute):
                return getattr(module, attribute)
        raise AttributeError(f"module {self.__name__!r} (moved to {', '.join(self.__homes)}) has no "
                             f"attribute {attribute!r}")


class MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the old module paths of :data:`MOVED` and serves :class:`MovedModule` objects for them."""

    def find_spec(self, fullname: str, path: object, target: object = None) -> importlib.machinery.ModuleSpec | None:
        return importlib.machinery.ModuleSpec(fullname, self) if fullname in MOVED else None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return MovedModule(spec.name, MOVED[spec.name])

    def exec_module(self, module: types.ModuleType) -> None:
        warnings.warn(f"{module.__name__} moved to {', '.join(MOVED[module.__name__])}; import from there.",
                      DeprecationWarning, stacklevel=2)


def install() -> None:
    """Put the finder on ``sys.meta_path`` once."""
    if not any(isinstance(finder, MovedFinder) for finder in sys.meta_path):
        sys.meta_path.append(MovedFinder())
