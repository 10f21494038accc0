"""The whole stack as OS processes, started by the same launcher as `make run`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.devstack import LocalStack, StackDidNotStart


@pytest.fixture(scope="session")
def running_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    stack = LocalStack(data=Path(tmp_path_factory.mktemp("stack")), env={"MODALMESH_DEAD_AFTER_S": "2"})
    try:
        with stack:
            yield stack
    except StackDidNotStart as exc:
        pytest.fail(f"stack did not start:\n{exc}")
