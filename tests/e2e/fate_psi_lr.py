"""PSI + CoordinatedLR + Evaluation between two FATE parties, with FATE's own pipeline API.

Run inside a party's environment (its fate_client knows its fate_flow from `flow init`):
    python fate_psi_lr.py data DIR            writes guest.csv and host.csv (deterministic, no downloads)
    python fate_psi_lr.py upload FILE ROLE    uploads FILE to this party's fate_flow as table experiment/ROLE
    python fate_psi_lr.py fit GUEST HOST      runs the job from the guest; prints `AUC <value>`
"""

from __future__ import annotations

import math
import random
import sys
from pathlib import Path

NAMESPACE = "experiment"


def data(out: Path) -> None:
    """Vertically split rows: the guest holds the label and x0..x2, the host x3..x5; ids overlap partly (PSI)."""
    rng = random.Random(7)
    weights = [1.5, -2.0, 1.0, 0.8, -1.2, 2.0]
    guest, host = ["id,y,x0,x1,x2"], ["id,x3,x4,x5"]
    for i in range(240):
        x = [rng.gauss(0, 1) for _ in weights]
        y = int(1 / (1 + math.exp(-sum(w * v for w, v in zip(weights, x, strict=True)))) > rng.random())
        if i < 200:
            guest.append(f"{i},{y}," + ",".join(f"{v:.4f}" for v in x[:3]))
        if i >= 20:
            host.append(f"{i}," + ",".join(f"{v:.4f}" for v in x[3:]))
    (out / "guest.csv").write_text("\n".join(guest) + "\n")
    (out / "host.csv").write_text("\n".join(host) + "\n")


def upload(file: str, role: str) -> None:
    from fate_client.pipeline import FateFlowPipeline

    meta = {"delimiter": ",", "match_id_name": "id", "dtype": "float32"}
    if role == "guest":
        meta |= {"label_name": "y", "label_type": "int32"}
    FateFlowPipeline().transform_local_file_to_dataframe(
        file=file, head=True, namespace=NAMESPACE, name=role, meta=meta, extend_sid=True
    )


def fit(guest: str, host: str) -> None:
    from fate_client.pipeline import FateFlowPipeline
    from fate_client.pipeline.components.fate import PSI, CoordinatedLR, Evaluation, Reader

    pipeline = FateFlowPipeline().set_parties(guest=guest, host=host, arbiter=guest)
    reader = Reader("reader_0", runtime_parties={"guest": guest, "host": host})  # the arbiter holds no data
    reader.guest.task_parameters(namespace=NAMESPACE, name="guest")
    reader.hosts[0].task_parameters(namespace=NAMESPACE, name="host")
    psi = PSI("psi_0", input_data=reader.outputs["output_data"])
    lr = CoordinatedLR(
        "lr_0",
        epochs=3,
        batch_size=None,
        optimizer={"method": "sgd", "optimizer_params": {"lr": 0.5}},
        init_param={"fit_intercept": True},
        train_data=psi.outputs["output_data"],
    )
    evaluation = Evaluation(
        "evaluation_0",
        runtime_parties={"guest": guest},
        default_eval_setting="binary",
        input_datas=[lr.outputs["train_output_data"]],
    )
    pipeline.add_tasks([reader, psi, lr, evaluation])
    pipeline.compile()
    pipeline.fit()
    metrics = pipeline.get_task_info("evaluation_0").get_output_metric()
    auc = _find_auc(metrics)
    print(f"AUC {auc}")


def _find_auc(tree: object) -> float:
    """The `auc` entry anywhere in the evaluation metrics (FATE 2.2: {"metric": "auc", "val": ...})."""
    if isinstance(tree, dict):
        if tree.get("metric") == "auc" and isinstance(tree.get("val"), (int, float)):
            return float(tree["val"])
        tree = list(tree.values())
    if isinstance(tree, list):
        for item in tree:
            found = _find_auc(item)
            if not math.isnan(found):
                return found
    return math.nan


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "data":
        data(Path(args[0]))
    elif command == "upload":
        upload(*args)
    else:
        fit(*args)
