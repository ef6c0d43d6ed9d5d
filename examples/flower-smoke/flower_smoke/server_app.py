"""ServerApp: explicit FedAvg loop that records which partition-ids replied per round."""

import json
import os
import time
from pathlib import Path

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.serverapp import Grid, ServerApp

from flower_smoke.task import init_params, load_partition, mse

app = ServerApp()


def _wait_for_nodes(grid: Grid, n: int, timeout: float = 60.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        ids = list(grid.get_node_ids())
        if len(ids) >= n or time.monotonic() > deadline:
            return ids
        time.sleep(1.0)


@app.main()
def main(grid: Grid, context: Context) -> None:
    rc = context.run_config
    num_rounds = int(rc["num-server-rounds"])
    result_path = str(rc.get("result-path", "")) or os.environ.get("FLOWER_SMOKE_RESULT", "")
    min_nodes = int(rc.get("min-nodes", 2))
    node_wait = float(rc.get("node-wait-seconds", 60))

    params = init_params()
    node_ids = _wait_for_nodes(grid, min_nodes, node_wait)
    print(f"[flower-smoke] connected nodes: {node_ids}", flush=True)
    rounds = []
    for rnd in range(1, num_rounds + 1):
        content = RecordDict(
            {
                "arrays": ArrayRecord(params),
                "config": ConfigRecord(
                    {
                        "server-round": rnd,
                        "local-steps": int(rc["local-steps"]),
                        "learning-rate": float(rc["learning-rate"]),
                    }
                ),
            }
        )
        msgs = [
            Message(content=content, dst_node_id=nid, message_type=MessageType.TRAIN, group_id=str(rnd))
            for nid in node_ids
        ]
        replies = list(grid.send_and_receive(msgs, timeout=120))
        ok = [r for r in replies if not r.has_error()]
        errors = [str(r.error) for r in replies if r.has_error()]
        total = sum(int(r.content["metrics"]["num-examples"]) for r in ok)
        if ok:
            new = []
            for i in range(len(params)):
                new.append(
                    sum(
                        r.content["arrays"].to_numpy_ndarrays()[i] * int(r.content["metrics"]["num-examples"])
                        for r in ok
                    )
                    / total
                )
            params = new
        pids = sorted(int(r.content["metrics"]["partition-id"]) for r in ok)
        # Server-side check on the union of all partitions (same synthetic generator).
        x0, y0 = load_partition(0, 2)
        rounds.append(
            {
                "round": rnd,
                "partition_ids": pids,
                "num_replies": len(replies),
                "errors": errors,
                "global_mse_p0": mse(params, x0, y0),
            }
        )
        print(f"[flower-smoke] round {rnd}: partition_ids={pids} errors={errors}", flush=True)

    result = {
        "num_rounds": num_rounds,
        "node_ids": node_ids,
        "rounds": rounds,
        "final_w": params[0].tolist(),
        "final_b": params[1].tolist(),
    }
    print(f"[flower-smoke] RESULT {json.dumps(result)}", flush=True)
    if result_path:
        p = Path(result_path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(result, indent=2))
