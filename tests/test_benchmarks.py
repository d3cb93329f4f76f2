"""Smoke tests of the benchmarks: they run, and their JSON has the documented fields."""

import json
import subprocess
import sys


def _run(module, *args):
    result = subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_loader_quick_writes_the_json_and_the_chart(tmp_path, imagenet_dir):
    out = tmp_path / "loader.json"
    _run("benchmarks.loader", "--quick", "--device", "cpu", "--data", imagenet_dir / "train", "--json", out)
    report = json.loads(out.read_text())
    assert {"cpu", "cores", "gpu", "driver", "torch", "dali", "torchvision"} <= set(report["env"])
    configs = {"torchvision", "torchvision_mixup", "torchvision_timm_mixup", "dali", "dali_mixup",
               "dali_mixup_composite", "dali_then_torch_mixup"}
    assert set(report["results"]) == configs and set(report["runs"]) == configs
    assert all(len(values) == 2 and min(values) > 0 for values in report["runs"].values())
    assert {"dali_mixup / dali", "dali / torchvision"} <= set(report["ratios"])
    assert (tmp_path / "loader.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_throughput_and_mixup_op_run_on_cpu(tmp_path, imagenet_dir):
    _run("benchmarks.train_throughput", "--device", "cpu", "--data", imagenet_dir / "train", "--model", "resnet18",
         "--batch-size", 4, "--crop-size", 32, "--steps", 2, "--runs", 1, "--json", tmp_path / "train.json")
    assert set(json.loads((tmp_path / "train.json").read_text())["results"]) == {"synthetic", "dali_mixup"}
    _run("benchmarks.mixup_op", "--device", "cpu", "--batch-size", 4, "--size", 32, "--iterations", 2, "--runs", 1,
         "--json", tmp_path / "op.json")
    results = json.loads((tmp_path / "op.json").read_text())["results"]
    assert {"normalize", "fused", "composite"} <= set(results)  # the fused CPU operator builds here
    assert all(results[path]["floor_ms"] > 0 for path in ("normalize", "fused", "composite"))
