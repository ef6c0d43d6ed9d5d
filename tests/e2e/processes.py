"""Starting and stopping the real FL processes of an end-to-end test, with their logs kept for failures."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tools.stack_files import ROOT

BUILD_WAIT_SECONDS = 40 * 60  # `./dev test` builds the venvs while the other tests run


def framework_bin(name: str) -> Path:
    """bin/ of the framework's own venv (made by `./dev test` from requirements-e2e-NAME.txt), once its build,
    which `./dev test` runs in the background, has finished."""
    venv = ROOT / f".venv-{name}"
    building, build_log = venv.with_name(f"{venv.name}.building"), venv.with_name(f"{venv.name}.build.log")
    deadline = time.monotonic() + BUILD_WAIT_SECONDS
    while _builder_alive(building) and time.monotonic() < deadline:
        time.sleep(2)
    if _builder_alive(building):
        raise RuntimeError(f"{venv.name} is still being built after {BUILD_WAIT_SECONDS} s (see {build_log})")
    if build_log.exists():
        tail = "\n".join(build_log.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"building {venv.name} failed or was interrupted: run `./dev test` again\n{tail}")
    path = venv / "bin"
    if not (path / "python").exists():
        raise RuntimeError(
            f"{path} is missing: run `./dev test` (it builds .venv-{name} from requirements-e2e-{name}.txt)"
        )
    return path


def _builder_alive(marker: Path) -> bool:
    try:
        os.kill(int(marker.read_text()), 0)
    except (OSError, ValueError):  # no marker, an unfinished write, or a builder that is gone
        return False
    return True


class Processes:
    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def start(
        self, name: str, args: list[str], env: dict[str, str], cwd: Path | None = None
    ) -> subprocess.Popen[bytes]:
        # Append mode: a process whose children reopen /dev/stdout (nginx workers) must not overwrite its lines.
        log = (self.log_dir / f"{name}.log").open("ab")
        proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.running[name] = proc
        return proc

    def log(self, name: str, tail: int = 60) -> str:
        lines = (self.log_dir / f"{name}.log").read_text(errors="replace").splitlines()
        return "\n".join(lines[-tail:])

    def logs(self) -> str:
        return "\n".join(f"--- {name} ---\n{self.log(name)}" for name in self.running)

    def check_alive(self) -> None:
        for name, proc in self.running.items():
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode}:\n{self.log(name)}")

    def wait_for(self, what: str, probe: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                if probe():
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{self.logs()}")

    def exit_codes(self, names: list[str], timeout: float) -> dict[str, int]:
        """Waits until each of `names` exited, all within `timeout` seconds; their exit codes."""
        deadline = time.monotonic() + timeout
        codes: dict[str, int] = {}
        for name in names:
            try:
                codes[name] = self.running[name].wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise AssertionError(f"{name} still running after {timeout} s\n{self.logs()}") from None
        return codes

    def stop_all(self) -> None:
        for proc in self.running.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in self.running.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)


def base_env(bin_dir: Path) -> dict[str, str]:
    """A clean environment: the framework venv first on PATH (Flower starts flower-superexec by name)."""
    return {"PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1"}
