"""Smoke tests of the benchmarks: they run, and their JSON has the documented fields."""

import json
import os
import subprocess
import sys
import time


def _run(module, *args):
    result = subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_loader_quick_writes_the_json_and_the_chart(tmp_path, imagenet_dir):
    out = tmp_path / "loader.json"
    _run("benchmarks.loader", "--quick", "--device", "cpu", "--data", imagenet_dir / "train", "--json", out)
    report = json.loads(out.read_text())
    assert {"cpu", "cores", "gpu", "driver", "torch", "dali", "torchvision"} <= set(report["env"])
    configs = {"torchvision", "torchvision_mixup", "torchvision_timm_mixup", "torchvision_timm_mixup_cutmix", "dali",
               "dali_mixup", "dali_cutmix", "dali_mixup_cutmix", "dali_mixup_composite", "dali_then_torch_mixup",
               "torchvision_timm_deit", "dali_deit"}
    assert set(report["results"]) == configs and set(report["runs"]) == configs
    assert all(len(values) == 2 and min(values) > 0 for values in report["runs"].values())
    assert {"dali_mixup / dali", "dali_cutmix / dali", "dali_mixup_cutmix / dali", "dali / torchvision",
            "torchvision_timm_mixup_cutmix / torchvision", "dali_deit / torchvision_timm_deit"} <= set(report["ratios"])
    assert (tmp_path / "loader.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_throughput_and_mixup_op_run_on_cpu(tmp_path, imagenet_dir):
    _run("benchmarks.train_throughput", "--device", "cpu", "--data", imagenet_dir / "train", "--model", "resnet18",
         "--batch-size", 4, "--crop-size", 32, "--steps", 2, "--runs", 1, "--json", tmp_path / "train.json")
    assert set(json.loads((tmp_path / "train.json").read_text())["results"]) == {"synthetic", "dali_mixup"}
    _run("benchmarks.mixup_op", "--device", "cpu", "--batch-size", 4, "--size", 32, "--iterations", 2, "--runs", 1,
         "--json", tmp_path / "op.json")
    results = json.loads((tmp_path / "op.json").read_text())["results"]
    paths = ("normalize", "fused", "composite", "fused_cutmix", "composite_cutmix")
    assert set(paths) <= set(results)  # the fused CPU operator builds here
    assert all(results[path]["floor_ms"] > 0 for path in paths)
    assert (tmp_path / "op.png").read_bytes().startswith(b"\x89PNG")


def test_gpu_report_runs_every_step_on_the_cpu_within_its_budget(tmp_path, spoken_dir):
    start = time.perf_counter()
    _run("benchmarks.gpu_report", "--device", "cpu", "--budget", "120", "--out", tmp_path, "--speech-data", spoken_dir[0])
    assert time.perf_counter() - start < 130
    report = json.loads((tmp_path / "gpu-report.json").read_text())
    assert {"environment", "build", "tests", "benchmarks", "targets", "steps"} <= set(report)
    assert {"cpu", "cores", "gpu", "driver", "python", "torch", "dali"} <= set(report["environment"])
    assert report["quick"] and report["budget"] == 120
    assert list(report["steps"]) == ["build", "tests", "mixup_op", "loader", "speech", "train_throughput"]
    assert all(step["status"] == "ok" and step["seconds"] > 0 for step in report["steps"].values()), report["steps"]
    assert "cpu" in report["build"]["backends"] and report["build"]["library"].endswith(".so")
    assert report["tests"] and all(test["outcome"] == "passed" for test in report["tests"].values())
    assert set(report["benchmarks"]) == {"mixup_op", "loader", "speech", "train_throughput"}
    assert {"fused_resize", "resize_then_fused", "fused_cutmix"} <= set(report["benchmarks"]["mixup_op"]["results"])
    assert [row["target"] for row in report["targets"]] == [
        "dali_mixup / dali (loader, mixup in the graph)", "dali / torchvision (loader)",
        "dali / torch_dataloader (speech)", "dali_mixup / dali (speech)"]
    assert all(row["measured"] > 0 and row["met"] in (True, False) for row in report["targets"])
    text = (tmp_path / "gpu-report.md").read_text()
    assert all(f"## {section}\n" in text for section in ("Environment", "Build", "Tests", "Benchmarks", "Steps"))
    # What the device tool brings back: at most 8 files.
    assert sorted(os.listdir(tmp_path)) == ["gpu-report.json", "gpu-report.md", "loader.json", "loader.png",
                                            "mixup-op.json", "mixup-op.png", "speech.json", "train-throughput.json"]


def test_gpu_report_records_a_failing_step_and_goes_on():
    # A step that fails or hangs is recorded with its error and the report is still written; a target
    # whose benchmark failed is "not measured".
    from benchmarks import gpu_report

    steps = {}
    failed, _ = gpu_report.run_step("broken", [sys.executable, "-c", "import sys; sys.exit('no CUDA GPU')"], 60, steps)
    hung, _ = gpu_report.run_step("hung", [sys.executable, "-c", "import time; time.sleep(30)"], 1, steps)
    ok, output = gpu_report.run_step("fine", [sys.executable, "-c", "print('done')"], 60, steps)
    assert failed["status"] == "failed" and "no CUDA GPU" in failed["error"]
    assert hung["status"] == "timeout" and hung["error"] == "no result after 1 s"
    assert ok["status"] == "ok" and output.strip() == "done" and list(steps) == ["broken", "hung", "fine"]
    targets = gpu_report.check_targets("gpu", {"loader": {"ratios": {"dali_mixup / dali": 0.995}}})
    assert [(row["measured"], row["met"]) for row in targets] == [(0.995, True), (None, None), (None, None)]
    report = {"device": "gpu", "quick": True, "date": "2026-11-23", "environment": {"gpu": "H100"}, "build": {},
              "tests": {"t::a": {"outcome": "failed", "message": "AssertionError: x"}}, "targets": targets,
              "steps": steps}
    text = gpu_report.markdown(report)
    assert "| fused operator / bandwidth floor | <= 2.0 | — | not measured |" in text
    assert "| broken | failed |" in text and "| hung | timeout |" in text and "AssertionError: x" in text


def test_scale_quick_measures_every_build_and_the_targets(tmp_path):
    out = tmp_path / "scale.json"
    _run("benchmarks.scale", "--quick", "--root", tmp_path / "data", "--json", out)
    report = json.loads(out.read_text())
    record = report["results"]["2000"]
    assert set(record) == {"torchvision", "imagefolder", "filelist", "webdataset", "runs"}
    assert all(record[kind]["files"] == 2000 and record[kind]["seconds"] > 0 for kind in
               ("torchvision", "imagefolder", "filelist", "webdataset"))
    assert {"first_batch_s", "broken_epoch_s", "mib_over_20_broken_epochs", "mib_warm_up"} <= set(record["imagefolder"])
    assert report["error"]["named"] and report["check_data"]["exit_status"] == 0
    assert set(report["targets"]) == {"build / torchvision <= 1.0", "memory / torchvision <= 1.0",
                                      "broken-off epoch <= 1 s", "memory over 20 broken-off epochs <= 50 MiB",
                                      "error names the file within 1 s"}
    assert (tmp_path / "scale.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_checkpoints_quick_times_a_save_training_and_the_agreement(tmp_path, digits_dir):
    out = tmp_path / "checkpoints.json"
    _run("benchmarks.checkpoints", "--quick", "--data", digits_dir, "--json", out)
    report = json.loads(out.read_text())
    assert report["save"]["resnet18"]["bytes"] > 40e6 and report["save"]["resnet18"]["save_ms"] > 0
    assert set(report["training_images_per_sec"]) == {"0", "5"} and "save every 5 / epoch end only" in report["ratios"]
    assert report["agreement"]["step_ms"] > 0 and len(report["agreement"]["runs"]["poll"]) == 1


def test_the_deadline_plugin_stops_a_test_session_between_two_tests(tmp_path):
    """gpu_report --budget's test step: past its deadline, pytest stops after the test running and writes its report."""
    (tmp_path / "test_three.py").write_text("def test_a():\n    pass\n\ndef test_b():\n    pass\n\ndef test_c():\n    pass\n")
    env = {**os.environ, "DALI_MIXUP_TEST_DEADLINE": str(time.time() - 1)}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p",
                             "benchmarks.pytest_deadline", f"--junitxml={tmp_path / 'tests.xml'}",
                             str(tmp_path / "test_three.py")], capture_output=True, text=True, env=env,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from benchmarks import gpu_report, pytest_deadline

    assert pytest_deadline.STOPPED in result.stdout and "1 passed" in result.stdout, result.stdout
    (ran,) = gpu_report.test_results(tmp_path / "tests.xml")  # one test, named after pytest's rootdir
    assert ran.endswith("test_three::test_a"), ran
