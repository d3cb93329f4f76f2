"""Preemption-safe training: a signal saves inside the epoch and the resume sees exactly the steps an unbroken run
does; a kill at any moment leaves a consistent run folder; a finished run is left alone; a folder that cannot hold
the checkpoints is refused before training, and a failed save names its path and the system's error."""

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from train import checkpoint

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
# One thread per process: the CPU kernels then give the same bits in every run.
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
STEPS_PER_EPOCH = 22  # the digits' 1,437 train images over 2 ranks at batch 32


def _args(digits_dir, out, epochs=2):
    return ["-m", "train", "--recipe", "demo", "--data", str(digits_dir), "--epochs", str(epochs), "--batch-size", "32",
            "--threads", "1", "--out", str(out), "--log-steps"]


def _lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def _wait_for_step(process, steps_path, step, timeout=300):
    deadline = time.time() + timeout
    while not (os.path.isfile(steps_path) and len(_lines(steps_path)) >= step):
        assert process.poll() is None and time.time() < deadline, "the run ended before the signal"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def unbroken(digits_dir, tmp_path_factory):
    """Two epochs of the demo on 2 ranks, never stopped: every step's loss."""
    out = tmp_path_factory.mktemp("unbroken")
    result = subprocess.run([*TORCHRUN, *_args(digits_dir, out)[1:]], env=ENV, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return _lines(out / "steps.jsonl"), _lines(out / "metrics.jsonl")


def test_sigterm_saves_inside_the_epoch_and_the_resume_goes_on_step_for_step(digits_dir, tmp_path, unbroken):
    steps, metrics = unbroken
    at = random.randrange(3, 2 * STEPS_PER_EPOCH - 3)  # a random step, printed below if anything differs
    launcher = subprocess.Popen([*TORCHRUN, *_args(digits_dir, tmp_path)[1:]], env=ENV, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for_step(launcher, tmp_path / "steps.jsonl", at)
        signalled = time.perf_counter()
        launcher.send_signal(signal.SIGTERM)  # as SLURM does; torchrun passes it on to its workers
        log = launcher.communicate(timeout=120)[0]
        took = time.perf_counter() - signalled
    finally:
        with contextlib.suppress(ProcessLookupError):
            launcher.kill()
    assert "exiting with status 143" in log, log[-3000:]
    state = checkpoint.load(tmp_path / "checkpoint.pt")
    assert at <= state["step"] <= at + 3, (at, state["step"])  # the ranks agree within two steps of the signal
    assert took < 20, f"{took:.1f} s from SIGTERM to exit"  # two steps, a save and torchrun's teardown: ~1.5 s here
    resumed = subprocess.run([*TORCHRUN, *_args(digits_dir, tmp_path)[1:], "--resume"], env=ENV, capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming at epoch {state['epoch']}, batch {state['position']}" in resumed.stdout
    assert _lines(tmp_path / "steps.jsonl") == steps, f"signal at step {at}"  # bit for bit, every step
    assert _untimed(_lines(tmp_path / "metrics.jsonl")) == _untimed(metrics)  # every epoch once, the same numbers


def _untimed(rows):
    return [{key: value for key, value in row.items() if key not in ("images_per_sec", "time")} for row in rows]


def test_a_signal_to_one_rank_stops_both_after_the_same_step(digits_dir, tmp_path):
    # SLURM's --signal can reach one process only; the all-reduced flag stops the other rank too.
    launcher = subprocess.Popen([*TORCHRUN, *_args(digits_dir, tmp_path, epochs=1)[1:]], env=ENV,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for_step(launcher, tmp_path / "steps.jsonl", 4)
        workers = sorted(int(pid) for pid in subprocess.run(["pgrep", "-P", str(launcher.pid)], capture_output=True,
                                                            text=True).stdout.split())
        os.kill(workers[-1], signal.SIGTERM)  # the second worker started: rank 1
        log = launcher.communicate(timeout=120)[0]
    finally:
        with contextlib.suppress(ProcessLookupError):
            launcher.kill()
    stops = [line for line in log.splitlines() if "exiting with status 143" in line]
    assert len(stops) == 2 and len({line.split(": ", 2)[2] for line in stops}) == 1, log[-3000:]


def _single(digits_dir, out, *extra):
    return subprocess.Popen([sys.executable, *_args(digits_dir, out), *extra], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_sigusr1_on_one_process_saves_and_exits_138(digits_dir, tmp_path):
    process = _single(digits_dir, tmp_path, "--epochs", "1")
    _wait_for_step(process, tmp_path / "steps.jsonl", 5)
    process.send_signal(signal.SIGUSR1)
    log = process.communicate(timeout=120)[0]
    assert process.returncode == 138, log[-3000:]
    assert "signal SIGUSR1: saved at epoch 0, batch" in log
    assert checkpoint.load(tmp_path / "checkpoint.pt")["position"] >= 5


def test_a_kill_at_any_moment_leaves_a_consistent_run_folder(digits_dir, tmp_path):
    # One process, 44 steps a epoch at batch 32, a save every 3 steps: kills land in steps, saves and evaluations.
    args = ["--epochs", "2", "--save-every", "3"]
    reference = tmp_path / "reference"
    done = _single(digits_dir, reference, *args)
    assert done.wait(timeout=600) == 0
    out = tmp_path / "run"
    for kill in range(4):
        process = _single(digits_dir, out, *args, *(["--resume"] if kill else []))
        time.sleep(random.uniform(1.5, 6.0))
        process.kill()  # SIGKILL: no handler runs
        process.wait()
    final = _single(digits_dir, out, *args, "--resume")
    log = final.communicate(timeout=600)[0]
    assert final.returncode == 0, log[-3000:]
    rows = _lines(out / "metrics.jsonl")
    assert [row["epoch"] for row in rows] == [0, 1]
    assert rows == list(checkpoint.load(out / "checkpoint.pt")["metrics"])
    assert _lines(out / "steps.jsonl") == _lines(reference / "steps.jsonl")  # resumed from wherever, every step the same
    assert not (out / "checkpoint.pt.tmp").exists()


def test_a_resume_keeps_the_metrics_of_the_epochs_done(digits_dir, tmp_path):
    """The metrics file is rewritten from the checkpoint's rows at a resume: an epoch done before it stays."""
    assert _single(digits_dir, tmp_path, "--epochs", "1").wait(timeout=600) == 0
    longer = _single(digits_dir, tmp_path, "--epochs", "2", "--resume")
    log = longer.communicate(timeout=600)[0]
    assert longer.returncode == 0, log[-3000:]
    rows = _lines(tmp_path / "metrics.jsonl")
    assert [row["epoch"] for row in rows] == [0, 1] and rows == list(checkpoint.load(tmp_path / "checkpoint.pt")["metrics"])


def test_resume_of_a_finished_run_says_so_and_changes_nothing(digits_dir, tmp_path):
    process = _single(digits_dir, tmp_path, "--epochs", "1")
    assert process.wait(timeout=600) == 0
    before = {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)}
    again = _single(digits_dir, tmp_path, "--epochs", "1", "--resume")
    log = again.communicate(timeout=300)[0]
    assert again.returncode == 0 and "is of a finished run (1 of 1 epochs): nothing to do" in log, log[-2000:]
    assert {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)} == before


@contextlib.contextmanager
def _tmpfs(path, options):
    """A tmpfs mounted at ``path`` (root, where the machine allows it), or None."""
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True).returncode == 0
    try:
        yield path if mounted else None
    finally:
        if mounted:
            subprocess.run(["umount", str(path)], check=True)


def test_a_read_only_run_folder_is_refused_before_training(digits_dir, tmp_path):
    with _tmpfs(tmp_path / "ro", "ro,size=1m") as folder:
        if folder is None:  # no mount here: a folder no one may write to (root too), by the immutable attribute
            folder = tmp_path / "ro"
            if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode:
                pytest.skip("neither a read-only mount nor chattr +i is allowed here")
        try:
            result = subprocess.run([sys.executable, *_args(digits_dir, folder, epochs=1)], env=ENV, capture_output=True,
                                    text=True, timeout=300)
        finally:
            subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
    assert result.returncode != 0
    assert f"the run folder {folder} is not writable:" in result.stderr and "steps" not in result.stdout


def test_a_run_folder_without_room_for_two_checkpoints_is_refused_before_training(digits_dir, tmp_path, monkeypatch):
    with _tmpfs(tmp_path / "small", "size=512k") as folder:
        if folder is None:  # no mount here: the disk is said to be nearly full
            import shutil

            folder = tmp_path / "small"
            monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(1 << 30, 1 << 30, 65536))
        from train import trainer

        with pytest.raises(OSError, match=rf"the run folder {folder} has [\d,]+ bytes free; its checkpoints need about"):
            trainer.main(_args(digits_dir, folder, epochs=1)[2:])
        assert not (folder / "checkpoint.pt").exists() and not (folder / "steps.jsonl").exists()


def test_a_failed_save_removes_its_tmp_and_names_the_path_and_the_error(tmp_path):
    path = tmp_path / "checkpoint.pt"
    os.symlink("/dev/full", f"{path}.tmp")  # every write fails with ENOSPC, as on a full disk
    with pytest.raises(OSError, match=rf"could not write the checkpoint {path}: No space left on device"):
        checkpoint.save(path, {"w": torch.zeros(100_000)})
    assert not os.path.lexists(f"{path}.tmp") and not path.exists()
