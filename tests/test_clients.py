"""make_loader in other people's training code, under their own launchers, 2 CPU ranks (gloo), no rank passed.

PyTorch Lightning's DDP (whose launcher sets WORLD_SIZE and LOCAL_RANK but not RANK), Hugging Face
Accelerate, loops written as torchvision's reference and timm's train.py write them, and two nodes
under torchrun's c10d rendezvous: each rank trains on its own samples in every epoch, and val sees
every sample exactly once with as many batches on every rank (tests/client_worker.py runs them).
"""

import collections
import json
import math
import os
import socket
import subprocess
import sys

import pytest

from helpers import write_id_sets

HERE = os.path.dirname(__file__)
WORKER = os.path.join(HERE, "client_worker.py")
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
TRAIN, VAL, BATCH, WORLD = 97, 33, 8, 2  # 97 over 2 ranks at batch 8: 6 batches a rank, 1 sample left on each


@pytest.fixture(scope="module")
def sets(tmp_path_factory, imagenet_dir, spoken_dir):
    """A JSON file of make_loader arguments: an ImageFolder of 97 train and one of 33 val images, each its own class."""
    root = tmp_path_factory.mktemp("clients")
    found = {split: write_id_sets(root / split, n, imagenet_dir, spoken_dir[0], split)["imagefolder"]
             for split, n in (("train", TRAIN), ("val", VAL))}
    path = root / "sets.json"
    path.write_text(json.dumps({split: {"dataset": "imagefolder", "root": str(args["root"])}
                                for split, args in found.items()}))
    return path


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(command, out, timeout=300, **kwargs):
    os.makedirs(out, exist_ok=True)
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=os.path.dirname(HERE),
                            **kwargs)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result


def _records(out, client):
    return [json.loads((out / f"{client}-rank{rank}.json").read_text()) for rank in range(WORLD)]


def assert_train_is_sharded(records, epochs=3):
    for epoch in range(epochs):
        seen = [record["train"][epoch] for record in records]
        assert [len(s) for s in seen] == [TRAIN // WORLD // BATCH * BATCH] * WORLD, f"epoch {epoch}: steps differ"
        counts = collections.Counter(sample for samples in seen for sample in samples)
        assert max(counts.values()) == 1, f"epoch {epoch}: a sample is read twice, on one rank or two"
        assert TRAIN - len(counts) == TRAIN % (WORLD * BATCH), f"epoch {epoch}: more than the remainder unseen"
    assert epochs == 1 or records[0]["train"][0] != records[0]["train"][1], "epoch 1 repeats epoch 0's order"


def assert_val_is_exact(records, epochs=3):
    for epoch in range(epochs):
        assert sorted(sample for record in records for sample in record["val"][epoch]) == list(range(VAL)), epoch


def test_lightning_ddp_reads_each_rank_s_shard_and_validates_every_epoch(sets, tmp_path):
    _run([sys.executable, WORKER, "lightning", str(sets), str(tmp_path)], tmp_path)
    records = _records(tmp_path, "lightning")
    assert {record["env"]["RANK"] for record in records} == {None}, "Lightning set RANK: this is not the case tested"
    assert_train_is_sharded(records)
    assert_val_is_exact(records)


def test_accelerate_launch_on_two_cpu_processes(sets, tmp_path):
    # Accelerate's documented multi-process launch; without a GPU it runs as MULTI_CPU (gloo) through torchrun.
    _run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
          "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
          "--main_process_port", str(_free_port()), WORKER, "accelerate", str(sets), str(tmp_path)], tmp_path)
    records = _records(tmp_path, "accelerate")
    assert_train_is_sharded(records)
    assert_val_is_exact(records)


def test_a_loop_written_as_torchvision_s_reference(sets, tmp_path):
    _run([*TORCHRUN, "--standalone", "--nproc_per_node=2", WORKER, "torchvision", str(sets), str(tmp_path)], tmp_path)
    records = _records(tmp_path, "torchvision")
    assert_train_is_sharded(records)
    assert_val_is_exact(records)
    assert all(0 <= acc <= 100 for acc in records[0]["acc1"])


def test_a_loop_written_as_timm_s_train_py(sets, tmp_path):
    _run([*TORCHRUN, "--standalone", "--nproc_per_node=2", WORKER, "timm", str(sets), str(tmp_path)], tmp_path)
    records = _records(tmp_path, "timm")
    assert records[0]["mixed"] == [True, True, False], "loader.mixup_enabled = False did not stop the mixing"
    assert_train_is_sharded([{"train": record["train"][2:]} for record in records], epochs=1)  # unmixed: ids
    assert_val_is_exact(records)
    assert all(math.isfinite(top1) and 0 <= top1 <= 100 for top1 in records[0]["top1"])


def test_two_nodes_read_disjoint_shards_in_every_epoch(sets, tmp_path):
    # The port is free when _free_port returns, but another process may take it before torchrun binds it.
    for attempt in range(3):
        port, out = _free_port(), tmp_path / f"try{attempt}"
        os.makedirs(out)
        launchers = [subprocess.Popen(
            [*TORCHRUN, "--nnodes=2", "--nproc_per_node=1", f"--node_rank={node}", "--rdzv-backend=c10d",
             f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=nodes", WORKER, "nodes", str(sets), str(out)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for node in range(2)]
        logs = [launcher.communicate(timeout=300)[0] for launcher in launchers]
        codes = [launcher.returncode for launcher in launchers]
        if codes == [0, 0] or "Address already in use" not in "".join(logs):
            break
    assert codes == [0, 0], logs[0][-2000:] + logs[1][-2000:]
    records = _records(out, "nodes")
    assert sorted(record["node"] for record in records) == ["0", "1"]
    assert_train_is_sharded(records)
