"""The engines a worker can run, by name: each engine module declares its own `ENGINE`.

An engine module (a file in `services/workers/engines/`, and `services/workers/host.py`) ends with
`ENGINE = EngineKind(<its name>, <how it is built from WorkerSettings>)`; the worker, the settings'
validation, `make run` and the error for an unknown name all read the names from here, so a new
engine is one new module and nothing else to edit.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from services.workers.engine import Engine

if TYPE_CHECKING:
    from services.workers.settings import WorkerSettings

# The host of catalog models is not in the engines package: it holds engines, it is not one library.
_OUTSIDE_THE_PACKAGE = ("services.workers.host",)


@dataclass(frozen=True)
class EngineKind:
    """One engine as the worker knows it: its name (MODALMESH_WORKER_ENGINE) and how it is built
    from the worker's settings, with its own default model where the settings name none. `build`
    stops the worker (SystemExit) with what to set when the settings leave out what it needs."""

    name: str
    build: Callable[[WorkerSettings], Engine]


@cache
def kinds() -> dict[str, EngineKind]:
    """Every declared engine by name. Importing an engine module is cheap: each imports its heavy
    library only when it loads a model."""
    import services.workers.engines as package

    modules = [f"{package.__name__}.{m.name}" for m in pkgutil.iter_modules(package.__path__)]
    found: dict[str, EngineKind] = {}
    for module in sorted([*modules, *_OUTSIDE_THE_PACKAGE]):
        kind = getattr(importlib.import_module(module), "ENGINE", None)
        if isinstance(kind, EngineKind):
            if kind.name in found:
                raise RuntimeError(f"two engine modules declare the name {kind.name!r}")
            found[kind.name] = kind
    return found


def names() -> tuple[str, ...]:
    return tuple(sorted(kinds()))


def unknown_engine(name: str) -> str:
    """What to say about an engine name nothing declares."""
    return f"MODALMESH_WORKER_ENGINE={name!r} is not a known engine ({', '.join(names())})"


def build_engine(settings: WorkerSettings) -> Engine:
    """The engine `settings.engine` names, with its default model where none is configured."""
    kind = kinds().get(settings.engine)
    if kind is None:
        raise SystemExit(unknown_engine(settings.engine))
    return kind.build(settings)
