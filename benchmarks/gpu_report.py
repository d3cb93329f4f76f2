"""One command that turns a GPU machine into proof: build, tests and benchmarks, each target beside its number.

    python -m benchmarks.gpu_report --out DIR [--quick] [--device gpu|cpu] [--budget SECONDS] [--speech-data DIR]

Runs from the working tree with ``PYTHONPATH`` alone (no install, no network), in this order:

1. the environment: GPU, driver, CUDA, torch, DALI, Python, CPU count;
2. the fused operator's build (``python -m dali_mixup.build --json``): its backends, nvcc, architectures;
3. the tests: the ``gpu``-marked ones (on ``--device cpu``, a few of the CPU ones), pass or fail
   per test with the first lines of each failure;
4. ``benchmarks.mixup_op`` (the fused operator: mixup, CutMix and the resize in its pass, beside the
   stock operators), ``benchmarks.loader`` (over ImageNet-sized JPEGs from the dataset maker, written
   to a temporary folder), ``benchmarks.speech`` (spoken words from the speech maker) and
   ``benchmarks.train_throughput --model resnet50`` (AMP, channels_last; synthetic images against
   DALI with mixup), each on the device.

``--budget SECONDS`` bounds the whole: the steps run in that order, and each is given its share
(``SHARES``) of the time left when it starts, so a step that ends early leaves its time to the next;
the tests stop between two tests when their time is spent (the ones that ran are reported), a
benchmark is stopped at its limit ("not measured"); and a budget under ten minutes runs the
benchmarks at ``--quick``'s sizes. The GPU's device machine gives one call of at most 8 minutes:
``--budget 420`` leaves a minute for the files to come back.

Every step runs in its own process with a time limit, so a crash or a hang is recorded and the
report goes on. It writes ``DIR/gpu-report.json`` and ``DIR/gpu-report.md`` (each target beside its
measured value) and the benchmarks' own files: eight files in all (the device machine's limit; the tests' JUnit file and the speech chart stay behind). ``--quick`` is a first smoke
run (under 3 minutes on one H100): the same steps with small sizes. ``--device cpu`` runs the same
steps on DALI's CPU backend, so that CI tests the plumbing.
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree

from benchmarks import pytest_deadline
from benchmarks.common import environment

# The project's targets: (name, step, where the value is in the step's JSON, the comparison, the bound).
TARGETS = {
    "gpu": [
        ("dali_mixup / dali (loader, mixup in the graph)", "loader", ("ratios", "dali_mixup / dali"), ">=", 0.99),
        ("ResNet-50 AMP, DALI + mixup / synthetic", "train_throughput", ("ratios", "dali_mixup / synthetic"), ">=", 0.95),
        ("fused operator / bandwidth floor", "mixup_op", ("results", "fused", "over_floor"), "<=", 2.0),
    ],
    "cpu": [
        ("dali_mixup / dali (loader, mixup in the graph)", "loader", ("ratios", "dali_mixup / dali"), ">=", 0.97),
        ("dali / torchvision (loader)", "loader", ("ratios", "dali / torchvision"), ">=", 3.0),
        ("dali / torch_dataloader (speech)", "speech", ("ratios", "dali / torch_dataloader"), ">=", 1.0),
        ("dali_mixup / dali (speech)", "speech", ("ratios", "dali_mixup / dali"), ">=", 0.97),
    ],
}
# The steps in their order, and each one's share of the budget left when it starts.
SHARES = {"build": 0.15, "tests": 0.3, "mixup_op": 0.1, "loader": 0.2, "speech": 0.15, "train_throughput": 0.1}
QUICK_BELOW = 600  # seconds: a smaller budget runs the benchmarks at --quick's sizes
# What the test step runs on each device; the CPU selection is the plumbing's smoke test.
TEST_SELECTION = {"gpu": ["-m", "gpu"], "cpu": ["tests/test_fused.py", "-k", "cpu_matches_the_reference"]}
FAILURE_LINES = 12


def run_step(name, command, timeout, log):
    """Run one step's command; ``(record, stdout)`` where the record says how it went and how long it took."""
    start = time.perf_counter()
    print(f"[gpu_report] {name}: {' '.join(command)}", file=sys.stderr, flush=True)
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        record = {"status": "timeout", "seconds": round(time.perf_counter() - start, 1),
                  "error": f"no result after {timeout} s"}
        log[name] = record
        return record, ""
    record = {"status": "ok" if result.returncode == 0 else "failed", "seconds": round(time.perf_counter() - start, 1)}
    if result.returncode != 0:
        record["error"] = "\n".join((result.stderr or result.stdout).strip().splitlines()[-FAILURE_LINES:])
    log[name] = record
    return record, result.stdout


def test_results(junit_path):
    """Per-test outcomes from pytest's JUnit XML: ``{test: {"outcome", "message"}}``."""
    results = {}
    for case in ElementTree.parse(junit_path).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        outcome, message = "passed", ""
        for kind in ("failure", "error", "skipped"):
            found = case.find(kind)
            if found is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[kind]
                text = (found.get("message") or "") + "\n" + (found.text or "")
                message = "\n".join(line for line in text.strip().splitlines()[:FAILURE_LINES])
                break
        results[name] = {"outcome": outcome, "message": message}
    return results


def _dig(report, path):
    for key in path:
        if not isinstance(report, dict) or key not in report:
            return None
        report = report[key]
    return report


def check_targets(device, benchmarks):
    """Each target beside its measured value: ``[{"target", "bound", "measured", "met"}]``."""
    rows = []
    for name, step, path, comparison, bound in TARGETS[device]:
        value = _dig(benchmarks.get(step), path)
        met = None if value is None else (value >= bound if comparison == ">=" else value <= bound)
        rows.append({"target": name, "bound": f"{comparison} {bound}", "measured": value, "met": met})
    return rows


def make_data(folder, images):
    """An ImageFolder of ImageNet-sized JPEGs (about 500x375) from the dataset maker, 8 classes."""
    from dali_mixup.datasets import write_imagenet_like

    write_imagenet_like(folder, classes=8, per_class=images // 8)
    return folder


# Each benchmark's options: the full run on the GPU, then what --quick and --device cpu change.
BENCHMARK_OPTIONS = {
    "mixup_op": {"full": {}, "quick": {"--batch-size": 32, "--iterations": 5, "--runs": 2},
                 "cpu": {"--batch-size": 16, "--size": 64}},
    "loader": {"full": {"--runs": 5}, "quick": {"--runs": 2},
               "cpu": {"--batch-size": 16, "--crop-size": 64, "--configs": "torchvision dali dali_mixup"}},
    "speech": {"full": {"--runs": 5, "--per-word": 30}, "quick": {"--runs": 2, "--per-word": 8, "--batches": 1,
                                                                    "--batch-size": 50},
               "cpu": {"--runs": 2, "--per-word": 4, "--batches": 1, "--batch-size": 20}},
    "train_throughput": {"full": {"--model": "resnet50"}, "quick": {"--steps": 5, "--runs": 1, "--batch-size": 32},
                         "cpu": {"--model": "resnet18", "--crop-size": 64, "--batch-size": 8, "--steps": 2,
                                 "--runs": 1}},
}


def benchmark_commands(device, data, out, quick):
    """The benchmarks' commands, each writing its JSON under ``out``; ``data`` holds the folders of images and of
    spoken words (``"images"``, ``"speech"``: the speech benchmark makes its clips there)."""
    commands = {}
    for name, options in BENCHMARK_OPTIONS.items():
        chosen = {**options["full"], **(options["quick"] if quick else {}), **(options["cpu"] if device == "cpu" else {})}
        if name == "speech":
            chosen["--data"] = data["speech"]
            chosen["--png"] = os.path.join(data["scratch"], "speech.png")  # eight files come back, no more
        elif name != "mixup_op":
            chosen["--data"] = data["images"]
        chosen["--json"] = os.path.join(out, name.replace("_", "-") + ".json")
        args = [str(part) for option, value in chosen.items() for part in (option, *str(value).split())]
        commands[name] = [sys.executable, "-m", f"benchmarks.{name}", "--device", device, *args]
    return commands


def markdown(report):
    """The report as Markdown: environment, build, tests, benchmarks, targets, and every step's status."""
    env, build = report["environment"], report["build"]
    lines = [f"# GPU report: {report['device']}{' (quick)' if report['quick'] else ''}, {report['date']}", "",
             "## Environment", ""]
    lines += [f"- {key}: {value}" for key, value in env.items()]
    lines += ["", "## Build", ""]
    lines += [f"- {key}: {value}" for key, value in build.items()] or ["- (no result)"]
    tests = report["tests"]
    counts = {outcome: sum(t["outcome"] == outcome for t in tests.values())
              for outcome in ("passed", "failed", "error", "skipped")}
    lines += ["", "## Tests", "", ", ".join(f"{count} {outcome}" for outcome, count in counts.items()), ""]
    for name, test in tests.items():
        if test["outcome"] in ("failed", "error"):
            lines += [f"- **{test['outcome']}** `{name}`", "", "```", test["message"], "```", ""]
    lines += ["## Benchmarks", "", "| target | bound | measured | met |", "| --- | --- | ---: | --- |"]
    for row in report["targets"]:
        measured = "—" if row["measured"] is None else f"{row['measured']:.3f}"
        met = {True: "yes", False: "**no**", None: "not measured"}[row["met"]]
        lines.append(f"| {row['target']} | {row['bound']} | {measured} | {met} |")
    lines += ["", "## Steps", "", "| step | status | seconds |", "| --- | --- | ---: |"]
    lines += [f"| {name} | {step['status']}{'; ' + step['note'] if step.get('note') else ''} | {step['seconds']} |"
              for name, step in report["steps"].items()]
    for name, step in report["steps"].items():
        if step.get("error"):
            lines += ["", f"`{name}`:", "", "```", step["error"], "```"]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for gpu-report.json, gpu-report.md and the benchmarks' files")
    parser.add_argument("--device", choices=["gpu", "cpu"], default="gpu")
    parser.add_argument("--quick", action="store_true", help="a first smoke run: the same steps, small sizes")
    parser.add_argument("--speech-data", help="a Speech Commands-like folder for the speech step (default: made with "
                                              "the spoken-words maker, which needs espeak-ng's pip package: the GPU "
                                              "machine has none, so carry one there)")
    parser.add_argument("--budget", type=float, help="seconds for the whole report (default: no bound; each step "
                                                     "has its own limit)")
    args = parser.parse_args(argv)
    if args.budget is not None and args.budget < 30:
        parser.error(f"--budget must be at least 30 seconds, got {args.budget:g}")
    quick = args.quick or (args.budget is not None and args.budget < QUICK_BELOW)
    deadline = None if args.budget is None else time.time() + args.budget - 5  # 5 s to write the report

    def limit(step, default):
        """The step's time: its share of what is left of the budget (at least 5 s), or its own default."""
        if deadline is None:
            return default
        left = list(SHARES)[list(SHARES).index(step):]
        return max(5.0, (deadline - time.time()) * SHARES[step] / sum(SHARES[name] for name in left))

    os.makedirs(args.out, exist_ok=True)
    steps, benchmarks = {}, {}
    report = {"device": args.device, "quick": quick, "budget": args.budget, "date": datetime.date.today().isoformat(),
              "command": " ".join(["python -m benchmarks.gpu_report", *(argv if argv is not None else sys.argv[1:])]),
              "environment": environment(), "steps": steps}

    record, output = run_step("build", [sys.executable, "-m", "dali_mixup.build", "--json"], limit("build", 900), steps)
    report["build"] = json.loads(output.strip().splitlines()[-1]) if record["status"] == "ok" else {}

    with tempfile.TemporaryDirectory() as folder:
        junit = os.path.join(folder, "tests.xml")
        tests_limit = limit("tests", 300 if quick else 600)
        # The tests stop between two tests at their share, and are reported; the step's limit is a backstop.
        os.environ["DALI_MIXUP_TEST_DEADLINE"] = str(time.time() + tests_limit - 10)
        _, output = run_step("tests", [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p",
                                       "benchmarks.pytest_deadline", f"--junitxml={junit}",
                                       *TEST_SELECTION[args.device]], tests_limit + 20, steps)
        del os.environ["DALI_MIXUP_TEST_DEADLINE"]
        if steps["tests"]["status"] == "failed" and os.path.isfile(junit):
            steps["tests"]["status"] = "ok (with failing tests)"  # the failures are in the test table
        if pytest_deadline.STOPPED in output:
            steps["tests"]["note"] = "stopped at its share of the budget: the tests left did not run"
        report["tests"] = test_results(junit) if os.path.isfile(junit) else {}

        images = 256 if quick or args.device == "cpu" else 1280
        data = {"images": make_data(os.path.join(folder, "imagenet-like"), images),
                "speech": args.speech_data or os.path.join(folder, "spoken-words"), "scratch": folder}
        for name, command in benchmark_commands(args.device, data, args.out, quick).items():
            record, _ = run_step(name, command, limit(name, 300 if quick else 900), steps)
            path = command[command.index("--json") + 1]
            if record["status"] == "ok" and os.path.isfile(path):
                with open(path) as f:
                    benchmarks[name] = json.load(f)
    report["benchmarks"] = benchmarks
    report["targets"] = check_targets(args.device, benchmarks)

    with open(os.path.join(args.out, "gpu-report.json"), "w") as f:
        json.dump(report, f, indent=2)
    with open(os.path.join(args.out, "gpu-report.md"), "w") as f:
        f.write(markdown(report))
    failed = [name for name, step in steps.items() if not step["status"].startswith("ok")]
    print(f"[gpu_report] wrote {args.out}/gpu-report.md; steps that failed: {', '.join(failed) or 'none'}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
