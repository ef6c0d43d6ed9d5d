"""framework_bin: an e2e test waits for the venv that `./dev test` builds in the background, and a failed build
is reported with its log instead of a confusing import error later."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.e2e import processes


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(processes, "ROOT", tmp_path)
    (tmp_path / ".venv-demo" / "bin").mkdir(parents=True)
    return tmp_path


def test_waits_while_the_builder_runs_then_returns_the_venv(root: Path) -> None:
    builder = subprocess.Popen(["sleep", "3"])
    (root / ".venv-demo.building").write_text(str(builder.pid))

    def finish() -> None:  # what the build's subshell does when pip is done
        builder.wait()
        (root / ".venv-demo" / "bin" / "python").touch()
        (root / ".venv-demo.building").unlink()

    threading.Thread(target=finish).start()
    began = time.monotonic()
    assert processes.framework_bin("demo") == root / ".venv-demo" / "bin"
    assert time.monotonic() - began >= 2  # it did wait for the builder


def test_a_failed_build_is_reported_with_its_log(root: Path) -> None:
    (root / ".venv-demo.build.log").write_text("ERROR: No matching distribution found for fedml==9.9.9\n")
    with pytest.raises(RuntimeError) as failure:
        processes.framework_bin("demo")
    assert "building .venv-demo failed" in str(failure.value)
    assert "No matching distribution found for fedml==9.9.9" in str(failure.value)


def test_a_marker_left_by_a_dead_builder_does_not_block(root: Path) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    (root / ".venv-demo.building").write_text(str(gone.pid))
    (root / ".venv-demo" / "bin" / "python").touch()
    assert processes.framework_bin("demo") == root / ".venv-demo" / "bin"
