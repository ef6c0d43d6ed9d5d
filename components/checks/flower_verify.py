"""Flower verification: run the in-repo smoke app on the federation and check every partition took part.

Usage (the Job's command): python3 flower_verify.py APP_DIR FEDERATION PARTITIONS CONFIG_TOML

Runs `flwr run` against the SuperLink's Control API with `$FLWR_HOME/config.toml` = CONFIG_TOML (the
federation's address and CA), follows the run's log to its end, and succeeds only when `flwr ls` reports
the run `finished:completed` and every round's replies came from all of partitions 0..PARTITIONS-1 (the
smoke app reports the partition ids that replied). The last line names the problem otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, NoReturn

RESULT_MARK = "[flower-smoke] RESULT "
NODE_WAIT_SECONDS = 30


def fail(message: str) -> NoReturn:
    print(f"VERIFICATION FAILED: {message}", flush=True)
    sys.exit(1)


def flwr(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["flwr", *args], capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        fail(f"`flwr {' '.join(args)}` did not finish within {timeout:.0f}s")


def start_run(app: Path, federation: str, partitions: int) -> int:
    # The Job starts once every SuperNode is Ready (serving its health port): they had time to connect.
    overrides = f"min-nodes={partitions} num-server-rounds=1 node-wait-seconds={NODE_WAIT_SECONDS}"
    out = flwr("run", str(app), federation, "--format", "json", "--run-config", overrides, timeout=120)
    try:
        started: dict[str, Any] = json.loads(out.stdout)
    except json.JSONDecodeError:
        started = {}
    if out.returncode or not started.get("success"):
        print(out.stdout, out.stderr, flush=True)
        fail(f"the SuperLink's Control API did not start the run (flwr run exit {out.returncode})")
    return int(started["run-id"])


def run_status(federation: str, run_id: int) -> str:
    out = flwr("ls", federation, "--run-id", str(run_id), "--format", "json", timeout=60)
    try:
        runs = json.loads(out.stdout).get("runs", [])
    except json.JSONDecodeError:
        runs = []
    if not runs:
        print(out.stdout, out.stderr, flush=True)
        fail(f"`flwr ls` does not know run {run_id}")
    return str(runs[0].get("status", "unknown"))


def missing_partitions(result: dict[str, Any], partitions: int) -> list[str]:
    """One line per round that did not hear from every partition."""
    expected = set(range(partitions))
    problems = []
    for round_ in result.get("rounds", []):
        got = set(round_.get("partition_ids", []))
        if got != expected:
            missing = ", ".join(str(p) for p in sorted(expected - got)) or "none"
            problems.append(
                f"round {round_.get('round')}: partitions {sorted(got)} replied, missing {missing} "
                f"(errors: {round_.get('errors') or 'none'})"
            )
    return problems


def main(app_dir: str, federation: str, partitions_text: str, config_toml: str) -> None:
    partitions = int(partitions_text)
    home = Path(os.environ["FLWR_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(config_toml)
    # The mounted app is read-only (and ConfigMap files are symlinks): flwr builds from a plain copy.
    app = home.parent / "flower-smoke"
    shutil.rmtree(app, ignore_errors=True)
    shutil.copytree(app_dir, app, ignore=shutil.ignore_patterns("..*"))

    run_id = start_run(app, federation, partitions)
    print(f"run {run_id} started on {federation}; following its log", flush=True)
    log = flwr("log", str(run_id), federation, "--stream", timeout=420)
    print(log.stdout, log.stderr, flush=True)
    results = [line.split(RESULT_MARK, 1)[1] for line in log.stdout.splitlines() if RESULT_MARK in line]
    status = run_status(federation, run_id)
    print(f"run {run_id} status: {status}", flush=True)
    if status != "finished:completed":
        fail(f"run {run_id} ended {status!r}, not 'finished:completed'")
    if not results:
        fail(f"run {run_id} completed without the smoke app's result line in its log")
    result = json.loads(results[-1])
    problems = missing_partitions(result, partitions)
    if problems:
        connected = len(result.get("node_ids", []))
        fail(f"{connected} of {partitions} SuperNodes took part; " + "; ".join(problems))
    print(f"VERIFIED: run {run_id} completed with every partition 0..{partitions - 1} in every round", flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(f"usage: {sys.argv[0]} APP_DIR FEDERATION PARTITIONS CONFIG_TOML")
    main(*sys.argv[1:])
