"""Session-wide test setup."""

# Imported for their registration tables, which fill the config registry (as __main__.py's imports do).
import components.federations
import components.targets  # noqa: F401
from tools.mock_runtime import release_loops


def pytest_sessionfinish() -> None:
    release_loops()  # no spurious event-loop tracebacks at interpreter exit
