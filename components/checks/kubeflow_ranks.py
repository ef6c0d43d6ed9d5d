"""Kubeflow Trainer: every node of the TrainJob joins node 0, and tensors cross between all of them over gloo.

Run as the command of a verification TrainJob on the federation's own runtime, image, node count and
NetworkPolicy shape: it reads the PET_* variables Trainer v2 sets, like the federation's program. Node 0
keeps the rendezvous store and names the ranks that did not join in time; then every rank all-reduces its
rank + 1, and node 0 checks the sum (1 + ... + N), which only a complete data path between all ranks gives.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import timedelta

import torch
import torch.distributed as dist

VERDICT = "flstack/verdict"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--join-seconds", type=float, default=300, help="how long node 0 waits for every node")
    args = parser.parse_args(argv)
    rank, world = int(os.environ["PET_NODE_RANK"]), int(os.environ["PET_NNODES"])
    master, port = os.environ["PET_MASTER_ADDR"], int(os.environ["PET_MASTER_PORT"])
    wait = timedelta(seconds=args.join_seconds + 30)  # workers outwait node 0's verdict
    try:
        store = dist.TCPStore(master, port, world, rank == 0, timeout=wait, wait_for_workers=False)
    except (RuntimeError, OSError) as e:
        print(f"FAILED: node {rank} could not reach node 0's rendezvous at {master}:{port}: {e}", flush=True)
        return 1
    store.set(f"flstack/joined/{rank}", "1")
    if rank == 0:
        deadline = time.monotonic() + args.join_seconds
        missing = list(range(world))
        while missing and time.monotonic() < deadline:
            missing = [r for r in range(world) if not store.check([f"flstack/joined/{r}"])]
            time.sleep(0.5)
        store.set(VERDICT, ",".join(map(str, missing)))
        if missing:
            # Keep the store up until the nodes that did join have read the verdict (they exit with it too).
            present = [f"flstack/seen/{r}" for r in range(1, world) if r not in missing]
            until = time.monotonic() + 30
            while present and not store.check(present) and time.monotonic() < until:
                time.sleep(0.2)
            names = ", ".join(f"node {r}" for r in missing)
            print(f"FAILED: {names} of {world} did not join within {args.join_seconds:.0f} s", flush=True)
            return 1
    else:
        try:
            store.wait([VERDICT])
            verdict = store.get(VERDICT).decode()
            store.set(f"flstack/seen/{rank}", "1")
        except (RuntimeError, OSError) as e:
            print(f"FAILED: node {rank} lost node 0's rendezvous before its verdict: {e}", flush=True)
            return 1
        if verdict:
            print(f"FAILED: node 0 gave up waiting for node(s) {verdict}", flush=True)
            return 1
    dist.init_process_group("gloo", store=store, rank=rank, world_size=world, timeout=wait)
    total = torch.tensor([float(rank + 1)])
    dist.all_reduce(total)
    dist.destroy_process_group()
    expected = world * (world + 1) / 2
    if total.item() != expected:
        print(f"FAILED: the all-reduce over {world} nodes gave {total.item()}, expected {expected}", flush=True)
        return 1
    print(f"OK: node {rank}: all {world} nodes joined and all-reduced over gloo ({total.item():.0f})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
