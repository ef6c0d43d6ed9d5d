"""Scripts the verification Jobs run inside their pods (mounted from a ConfigMap; stdlib only).

Each is a standalone program for the framework's own image; flstack reads its text at render time.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent


def script(name: str) -> str:
    """The text of `components/checks/<name>.py`."""
    return (HERE / f"{name}.py").read_text()
