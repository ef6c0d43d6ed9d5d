"""ClientApp: reads partition-id / num-partitions from node_config."""

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from flower_smoke.task import load_partition, mse, train

app = ClientApp()


@app.train()
def train_fn(msg: Message, context: Context) -> Message:
    pid = int(context.node_config["partition-id"])
    nparts = int(context.node_config["num-partitions"])
    x, y = load_partition(pid, nparts)
    params = msg.content["arrays"].to_numpy_ndarrays()
    cfg = msg.content["config"]
    new_params = train(params, x, y, int(cfg["local-steps"]), float(cfg["learning-rate"]))
    metrics = MetricRecord(
        {
            "partition-id": pid,
            "num-partitions": nparts,
            "num-examples": len(y),
            "train-loss": mse(new_params, x, y),
        }
    )
    content = RecordDict({"arrays": ArrayRecord(new_params), "metrics": metrics})
    return Message(content=content, reply_to=msg)
