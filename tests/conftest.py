"""Session-wide test setup."""

from tools.mock_runtime import release_loops


def pytest_sessionfinish() -> None:
    release_loops()  # no spurious event-loop tracebacks at interpreter exit
