"""Session-wide test setup."""

import pytest

# Imported for their registration tables, which fill the config registry (as __main__.py's imports do).
import components.federations
import components.targets  # noqa: F401
from tools.mock_runtime import release_loops


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The real federations last: `./dev test` builds their venvs in the background meanwhile.
    items.sort(key=lambda item: item.get_closest_marker("e2e") is not None)


def pytest_sessionfinish() -> None:
    release_loops()  # no spurious event-loop tracebacks at interpreter exit
