"""The programs flstack's verification Jobs run, one per framework: stdlib-only scripts mounted from a ConfigMap.

Each is read as text by its framework module (`source(name)`) and run unchanged by the e2e tests.
"""

from __future__ import annotations

from pathlib import Path


def source(name: str) -> str:
    """The text of `<name>.py`, as the verification Job's ConfigMap carries it."""
    return (Path(__file__).parent / f"{name}.py").read_text()
