"""The trainer under real torchrun processes: accuracy, resume, atomic checkpoints, 2 nodes, bad options."""

import dataclasses
import io
import json
import math
import os
import random
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from dali_mixup.loader import make_loader
from helpers import photo_crops
from train import checkpoint
from train.models import create_model
from train.trainer import corrupt_labels, image_dtype, log

TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]


def _train(args, launcher=(sys.executable,), **kwargs):
    return subprocess.run([*launcher, "-m", "train", *map(str, args)], capture_output=True, text=True, timeout=600,
                          **kwargs)


def _metrics(out):
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def _kill_group(launcher):
    """Kill a torchrun launcher and its workers if they are still running (a failed test leaves none behind)."""
    if launcher.poll() is None:
        for pid in subprocess.run(["pgrep", "-P", str(launcher.pid)], capture_output=True, text=True).stdout.split():
            os.kill(int(pid), signal.SIGKILL)
        launcher.kill()
        launcher.wait()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_train_resnet8_to_90_percent(digits_dir, tmp_path):
    out = tmp_path / "run"
    result = _train(["--recipe", "demo", "--data", digits_dir, "--epochs", 8, "--batch-size", 32, "--threads", 1,
                     "--out", out], launcher=[*TORCHRUN, "--standalone", "--nproc_per_node=2"])
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["final_top1"] >= 0.90, summary
    assert set(summary) == {"final_top1", "best_top1", "final_top5", "epochs", "images_per_sec"}
    assert 0 <= summary["final_top5"] <= 1 and summary["epochs"] == 8 and summary["images_per_sec"] > 0
    rows = _metrics(out)
    assert [row["epoch"] for row in rows] == list(range(8))
    assert {"epoch", "train_loss", "val_loss", "val_top1", "val_top5", "images_per_sec", "lr", "time"} <= set(rows[0])
    config = json.loads((out / "config.json").read_text())
    assert config["world_size"] == 2 and config["model"] == "resnet8" and config["batch_size"] == 32
    # One RNG state per rank, each its own (the seeds are offset by rank).
    rng = checkpoint.load(out / "checkpoint.pt")["rng"]
    assert len(rng) == 2 and not torch.equal(rng[0]["torch"], rng[1]["torch"])


@pytest.fixture(scope="module")
def five_words(tmp_path_factory):
    """Spoken words for the speech recipe: 5 commands x 40 clips (chance is 0.2)."""
    from dali_mixup.spoken_words import write_spoken_words

    root = tmp_path_factory.mktemp("five") / "words"
    write_spoken_words(str(root), per_word=40, seed=0, words=("yes", "no", "up", "down", "stop"))
    return root


def test_two_processes_train_lenet_on_spoken_words_with_mixup(five_words, tmp_path):
    """The speech recipe under torchrun: mixup after one ERM epoch, val and test on voices never heard in training."""
    out = tmp_path / "run"
    result = _train(["--recipe", "speech", "--data", five_words, "--epochs", 6, "--batch-size", 10,
                     "--mixup-warmup-epochs", 1, "--warmup-epochs", 1, "--threads", 1, "--out", out],
                    launcher=[*TORCHRUN, "--standalone", "--nproc_per_node=2"])
    assert result.returncode == 0, result.stderr[-3000:]
    rows = _metrics(out)
    assert [row["mixup_alpha"] for row in rows] == [0.0] + [0.2] * 5
    assert {"val_top1", "val_loss", "test_top1", "test_loss", "test_top5"} <= set(rows[-1])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["final_test_top1"] == rows[-1]["test_top1"]
    # Well above chance (0.2): 0.4 of 21 val clips (9 of them) has p = 0.014 under chance. Measured with
    # seeds 0, 1, 2: val 0.48, 0.67, 0.76 and test 0.76, 0.71, 0.76 (one clip is 5 points).
    assert rows[-1]["val_top1"] >= 0.4 and rows[-1]["test_top1"] >= 0.4, rows[-1]


def test_resume_continues_the_same_run(digits_dir, tmp_path):
    # ERM: without mixup's per-batch λ the loss of an epoch varies little with the data order.
    common = ["--recipe", "demo", "--data", digits_dir, "--batch-size", 64, "--threads", 2, "--epochs", 3,
              "--mixup-alpha", 0]
    straight = _train([*common, "--out", tmp_path / "straight"])
    assert straight.returncode == 0, straight.stderr[-3000:]

    # The same run, killed once two epochs are logged (and so saved), then resumed.
    out = tmp_path / "resumed"
    process = subprocess.Popen([sys.executable, "-m", "train", *map(str, common), "--out", str(out)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while not (out / "metrics.jsonl").exists() or len(_metrics(out)) < 2:
            assert process.poll() is None and time.time() < deadline, "the run ended before it could be killed"
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    before = _metrics(out)
    # A line for an epoch whose checkpoint was never written (a crash in between) must not be kept.
    with open(out / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"epoch": len(before), "val_top1": -1}) + "\n")

    second = _train([*common, "--out", out, "--resume"])
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"resuming at epoch {len(before)}" in second.stdout
    resumed, reference = _metrics(out), _metrics(tmp_path / "straight")
    assert [row["epoch"] for row in resumed] == [0, 1, 2]
    assert resumed[: len(before)] == before
    for row, ref in zip(resumed, reference):
        assert row["lr"] == pytest.approx(ref["lr"])  # the schedule carries on where it stopped
    # Measured: the resumed epoch's loss 0.428 against the straight run's 0.444, with 1.832 at epoch 0 (the
    # step-for-step resume is tests/test_preemption.py's). A model that restarted from scratch would be back
    # near epoch 0's loss.
    first = len(before)
    assert abs(resumed[first]["train_loss"] - reference[first]["train_loss"]) < 0.1, (resumed, reference)
    assert resumed[first]["train_loss"] < 0.6 * reference[0]["train_loss"], (resumed, reference)
    assert abs(resumed[-1]["val_top1"] - reference[-1]["val_top1"]) < 0.08, (resumed[-1], reference[-1])


def _trained_state(model, optimizer, scheduler, scaler, steps=3):
    """A few SGD steps of ``model`` on real photo crops, so that the optimizer holds momentum."""
    images, labels = photo_crops(8, size=32)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
    y = torch.tensor(np.array(labels), dtype=torch.long)
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()


def _training_objects(seed):
    torch.manual_seed(seed)
    model = create_model("resnet8", 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 ** step)
    return model, optimizer, scheduler, torch.amp.GradScaler("cpu", enabled=False)


def test_a_resume_restores_momentum_schedule_weights_and_this_ranks_rng(tmp_path):
    model, optimizer, scheduler, scaler = _training_objects(seed=0)
    _trained_state(model, optimizer, scheduler, scaler)
    ranks = [checkpoint.rng_state()]
    random.random()
    torch.rand(3)  # rank 1's generators have moved on
    ranks.append(checkpoint.rng_state())
    checkpoint.save(tmp_path / "c.pt", checkpoint.training_state(
        model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler, epoch=3, position=0, step=3, best_top1=0.5,
        rng=ranks, loaders=[None, None], partial=[None, None], metrics=[]))
    random.random()
    torch.rand(5)  # and move on again before the resume

    fresh = _training_objects(seed=1)
    state = checkpoint.load(tmp_path / "c.pt")
    checkpoint.restore(state, model=fresh[0], optimizer=fresh[1], scheduler=fresh[2], scaler=fresh[3], rank=1)
    for (name, saved), restored in zip(model.named_parameters(), fresh[0].parameters()):
        assert torch.equal(saved, restored), name
        momentum = fresh[1].state[restored].get("momentum_buffer")
        assert momentum is not None and torch.equal(momentum, optimizer.state[saved]["momentum_buffer"]), name
    assert fresh[2].last_epoch == scheduler.last_epoch == 3 and fresh[1].param_groups[0]["lr"] == pytest.approx(0.1 / 8)
    assert torch.equal(torch.get_rng_state(), ranks[1]["torch"]) and random.getstate() == ranks[1]["python"]


def test_the_gpu_rng_state_is_the_current_gpus_alone(monkeypatch):
    # A rank uses one GPU: saving every visible GPU's state and restoring them by index fails with an
    # IndexError when a resumed rank sees fewer GPUs (per-rank CUDA_VISIBLE_DEVICES).
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda: torch.tensor([7], dtype=torch.uint8))
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state: calls.append(state))
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: pytest.fail("saves every GPU's state"))
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: pytest.fail("restores every GPU's state"))
    state = checkpoint.rng_state()
    checkpoint.set_rng_state(state)
    assert len(calls) == 1 and torch.equal(calls[0], torch.tensor([7], dtype=torch.uint8))


def test_a_kill_during_a_save_leaves_the_previous_checkpoint(tmp_path):
    path = tmp_path / "checkpoint.pt"
    script = textwrap.dedent(f"""
        import sys, time, torch
        from train import checkpoint
        checkpoint.save({str(path)!r}, {{"epoch": 1, "w": torch.ones(3)}})
        def slow_save(state, file):  # write part of the file, then hang as a slow disk would
            file.write(b"partial")
            file.flush()
            print("saving", flush=True)
            time.sleep(60)
        torch.save = slow_save
        checkpoint.save({str(path)!r}, {{"epoch": 2, "w": torch.zeros(3)}})
    """)
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "saving"
    process.send_signal(signal.SIGKILL)
    process.wait()
    state = checkpoint.load(path)
    assert state["epoch"] == 1 and torch.equal(state["w"], torch.ones(3))


def _two_node_launchers(digits_dir, out, port):
    """Two torchrun launchers, one per node, meeting at c10d rendezvous on 127.0.0.1:port; their logs."""
    launchers = [
        subprocess.Popen(
            [*TORCHRUN, "--nnodes=2", "--nproc_per_node=1", f"--node_rank={node}", "--rdzv-backend=c10d",
             f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=test", "-m", "train", "--recipe", "demo", "--data",
             str(digits_dir), "--epochs", "1", "--batch-size", "32", "--threads", "1", "--out", str(out)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for node in range(2)
    ]
    try:
        logs = [launcher.communicate(timeout=300)[0] for launcher in launchers]
    finally:
        for launcher in launchers:
            _kill_group(launcher)
    return [launcher.returncode for launcher in launchers], logs


def test_two_nodes_through_torchrun_rendezvous(digits_dir, tmp_path):
    # The port is free when _free_port returns, but another process may take it before torchrun
    # binds it: then the launch fails with EADDRINUSE and is tried on another port.
    for attempt in range(3):
        codes, logs = _two_node_launchers(digits_dir, tmp_path / f"run{attempt}", _free_port())
        if codes == [0, 0] or "Address already in use" not in "".join(logs):
            break
    assert codes == [0, 0], logs[0][-2000:] + logs[1][-2000:]
    run = tmp_path / f"run{attempt}"
    assert json.loads((run / "config.json").read_text())["world_size"] == 2
    assert [row["epoch"] for row in _metrics(run)] == [0]
    assert "2 rank(s)" in logs[0] + logs[1]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--bogus", "1"], "unrecognized arguments: --bogus 1"),
        (["--epochs", "0"], "--epochs must be >= 1, got 0"),
        (["--mixup-alpha", "-0.5"], "--mixup-alpha must be >= 0, got -0.5"),
        (["--label-smoothing", "1"], r"--label-smoothing must be in \[0, 1\), got 1.0"),
        (["--dropout", "0.2", "--model", "resnet50"], "--dropout applies to the PreAct models, not resnet50"),
        (["--model", "vgg16", "--dropout", "0.1"], "--dropout applies to the PreAct models, not vgg16"),
        (["--corrupt-labels", "0.5", "--dataset", "cifar10"], "--corrupt-labels works on imagefolder and filelist"),
        (["--milestones", "150", "100"], r"--milestones must be increasing epochs, got \[150, 100\]"),
        (["--cutmix-minmax", "0.8", "0.2"], r"--cutmix-minmax must be LO HI with 0 < LO < HI <= 1"),
        (["--auto-augment", "rand-m9.5"], "train image options: auto_augment 'rand-m9.5': m must be an integer"),
        (["--aa", "augmix"], "train image options: auto_augment 'augmix' is refused"),
        (["--train-interpolation", "random", "--augment", "pad_crop"], "interpolation='random'"),
        (["--recipe", "demo", "--scale", "0.5", "0.2"], r"scale must be \(lo, hi\)"),
        (["--color-jitter", "0.4", "0.4"], "color_jitter must be a number"),
        (["--crop-mode", "squash", "--augment", "pad_crop"], "--crop-mode apply to --augment random_resized_crop"),
        (["--drop-path", "0.1", "--model", "resnet50"], "--drop-path applies to timm models, not resnet50"),
        (["--model-ema-decay", "1.5"], r"--model-ema-decay must be in \(0, 1\)"),
        (["--aug-repeats", "0.5"], "--aug-repeats must be 0"),
        (["--mixup-mode", "pair", "--batch-size", "7"], "--mixup-mode pair mixes samples i and B-1-i: the batch per "
                                                        "rank must be even, got 7"),
        (["--mixup-mode", "pair", "--per-sample"], "--per-sample is --mixup-mode elem, not pair"),
        (["--bce-target-thresh", "0.2"], "--bce-target-thresh needs --bce-loss"),
        (["--model", "no_such_net"], "--model: no model 'no_such_net' among preact_resnet18, wrn28_10, resnet8, "
                                     "lenet_speech, vgg11_speech, torchvision's classification models, timm's models"),
        (["--reprob", "2"], r"train image options: reprob must be a number in \[0, 1\], got 2.0"),
        (["--opt", "nadam"], "argument --opt: invalid choice: 'nadam'"),
        (["--model", "lenet_speech"], "--model lenet_speech is for --dataset speechcommands, not cifar10"),
        (["--dataset", "speechcommands", "--model", "resnet8"], "--dataset speechcommands takes lenet_speech or "
                                                                "vgg11_speech, not resnet8"),
        (["--recipe", "speech", "--crop-size", "64", "--hflip", "0"],
         "--crop-size, --hflip apply to image datasets, not --dataset speechcommands"),
        (["--min-crop-area", "0.3"], "--min-crop-area apply to --augment random_resized_crop, not pad_crop"),
        (["--device", "gpu"] if not torch.cuda.is_available() else ["--amp", "fp16", "--device", "cpu"],
         "--device gpu, but torch sees no CUDA GPU" if not torch.cuda.is_available() else "--amp fp16 needs a GPU"),
    ],
)
def test_invalid_options_give_a_clear_error(digits_dir, args, message, capsys):
    # parse_config is what `python -m train` runs first (the CLI's exit status is checked below).
    from train.config import parse_config

    with pytest.raises(SystemExit) as exit_:
        parse_config(["--data", str(digits_dir), *args], cuda=torch.cuda.is_available())
    stderr = capsys.readouterr().err
    assert exit_.value.code == 2 and re.search(message, stderr), stderr


def test_the_command_line_exits_2_on_an_invalid_option(digits_dir):
    result = _train(["--data", digits_dir, "--bogus", "1"])
    assert result.returncode == 2 and "unrecognized arguments: --bogus 1" in result.stderr, result.stderr


def test_missing_splits_and_data_are_clear_errors(digits_dir, tmp_path, capsys):
    from train import trainer

    with pytest.raises(SystemExit, match="must hold train/ and val/"):
        trainer.main(["--recipe", "demo", "--data", str(digits_dir / "train"), "--out", str(tmp_path)])
    with pytest.raises(SystemExit) as exit_:
        trainer.main(["--recipe", "demo", "--data", str(tmp_path / "nowhere")])
    assert exit_.value.code == 2 and "does not exist" in capsys.readouterr().err


@pytest.fixture
def one_torch_thread():
    """One torch thread for a trainer run in this process, beside DALI's threads (2 cores here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("device, amp, dtype", [("gpu", "bf16", torch.float16), ("gpu", "fp16", torch.float16),
                                               ("gpu", "off", torch.float32), ("cpu", "off", torch.float32),
                                               ("cpu", "bf16", torch.float32)])
def test_the_image_dtype_follows_the_amp_setting(device, amp, dtype):
    # An fp32 model without autocast refuses float16 input ("Input type (Half) and weight type (float)").
    assert image_dtype(device, amp) == dtype


def test_one_train_pipeline_is_alive_at_a_time(digits_dir, tmp_path, monkeypatch):
    # A mixup warm-up and a mixup-off epoch each need another train pipeline; on a GPU each holds
    # nvJPEG's buffers (~211 MB of device memory), so the old one must be gone before the next is built.
    import weakref

    from train import trainer

    alive, build = [], trainer.make_loader

    def make_loader(**kwargs):
        if kwargs["split"] == "train":
            assert all(loader() is None for loader in alive), "a train pipeline is still alive"
        loader = build(**kwargs)
        if kwargs["split"] == "train":
            alive.append(weakref.ref(loader))
        return loader

    monkeypatch.setattr(trainer, "make_loader", make_loader)
    trainer.main(["--recipe", "demo", "--data", str(digits_dir), "--epochs", "3", "--mixup-warmup-epochs", "1",
                  "--mixup-off-epoch", "2", "--batch-size", "128", "--threads", "1", "--out", str(tmp_path)])
    assert len(alive) == 3 and [row["mixup_alpha"] for row in _metrics(tmp_path)] == [0.0, 0.2, 0.0]


@pytest.mark.gpu
def test_a_gpu_run_without_amp_trains(digits_dir, tmp_path):
    result = _train(["--recipe", "demo", "--data", digits_dir, "--epochs", 1, "--device", "gpu", "--amp", "off",
                     "--out", tmp_path])
    assert result.returncode == 0, result.stderr[-3000:]


def test_cutmix_and_randaugment_train_the_demo(digits_dir, tmp_path, one_torch_thread):
    from train import trainer

    trainer.main(["--recipe", "demo", "--data", str(digits_dir), "--cutmix-alpha", "1.0", "--auto-augment",
                  "rand-m9-n2", "--epochs", "6", "--threads", "2", "--out", str(tmp_path)])
    rows = _metrics(tmp_path)
    assert rows[0]["cutmix_alpha"] == 1.0 and rows[-1]["val_top1"] >= 0.6, rows[-1]  # measured: 0.84
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]


RECIPE_CHECKS = {
    # Each recipe's settings as its paper's table gives them (config.py cites them), and its lr per sample.
    "rsb-a1": ({"model": "timm:resnet50", "opt": "lamb", "epochs": 600, "weight_decay": 0.01, "crop_size": 224,
                "val_crop_size": 224, "crop_pct": 0.95, "mixup_alpha": 0.2, "cutmix_alpha": 1.0,
                "auto_augment": "rand-m7-mstd0.5-inc1", "bce_loss": True, "bce_target_thresh": 0.2,
                "label_smoothing": 0.1, "drop_path": 0.05, "aug_repeats": 3, "schedule": "cosine", "warmup_epochs": 5,
                "model_ema": False}, 5e-3 / 2048),
    "rsb-a2": ({"model": "timm:resnet50", "epochs": 300, "weight_decay": 0.02, "mixup_alpha": 0.1,
                "auto_augment": "rand-m7-mstd0.5-inc1", "label_smoothing": 0.0, "drop_path": 0.05, "aug_repeats": 3},
               5e-3 / 2048),
    "rsb-a3": ({"model": "resnet50", "opt": "lamb", "epochs": 100, "weight_decay": 0.02, "crop_size": 160,
                "val_crop_size": 224, "crop_pct": 0.95, "mixup_alpha": 0.1, "cutmix_alpha": 1.0,
                "auto_augment": "rand-m6-mstd0.5-inc1", "bce_loss": True, "bce_target_thresh": 0.2,
                "label_smoothing": 0.0, "schedule": "cosine", "warmup_epochs": 5, "aug_repeats": 0}, 8e-3 / 2048),
    "deit-s": ({"model": "deit_small_patch16_224", "opt": "adamw", "epochs": 300, "weight_decay": 0.05,
                "crop_size": 224, "mixup_alpha": 0.8, "cutmix_alpha": 1.0, "auto_augment": "rand-m9-mstd0.5-inc1",
                "reprob": 0.25, "remode": "pixel", "label_smoothing": 0.1, "drop_path": 0.1, "aug_repeats": 3,
                "model_ema": True, "model_ema_decay": 0.99996, "train_interpolation": "bicubic",
                "interpolation": "bicubic", "schedule": "cosine", "warmup_epochs": 5}, 5e-4 / 512),
}


@pytest.fixture(scope="module")
def imagenet_like(tmp_path_factory):
    """The maker's ImageNet-like data: 4 classes, 8 train and 1 val images each, at ImageNet's sizes."""
    from dali_mixup.datasets import write_imagenet_like

    root = tmp_path_factory.mktemp("imagenet_like")
    write_imagenet_like(str(root / "train"), classes=4, per_class=8)
    write_imagenet_like(str(root / "val"), classes=4, per_class=1, start=8)
    return root


def test_the_recipes_resolve_on_help(capsys):
    from train import trainer

    with pytest.raises(SystemExit):
        trainer.main(["--help"])
    out = capsys.readouterr().out
    assert all(name in out for name in ("rsb-a1", "rsb-a2", "rsb-a3", "deit-s"))


@pytest.mark.parametrize("recipe", ["rsb-a1", "rsb-a2", "deit-s", "rsb-a3"])
def test_a_recipe_runs_an_epoch_on_the_imagenet_like_data(recipe, imagenet_like, tmp_path, one_torch_thread):
    from train import trainer

    trainer.main(["--recipe", recipe, "--data", str(imagenet_like), "--epochs", "1", "--batch-size", "4",
                  "--threads", "2", "--out", str(tmp_path / "run")])
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    expected, lr_per_sample = RECIPE_CHECKS[recipe]
    expected = {key: value for key, value in expected.items() if key != "epochs"}
    assert {key: config[key] for key in expected} == expected
    assert config["lr"] == pytest.approx(lr_per_sample * 4)  # the recipe's lr per sample times this batch
    rows = _metrics(tmp_path / "run")
    assert [row["epoch"] for row in rows] == [0] and math.isfinite(rows[0]["train_loss"])
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    if config["model_ema"]:  # timm's EMA, evaluated beside the model and saved for --resume
        assert "val_ema_top1" in rows[0] and math.isfinite(rows[0]["val_ema_loss"])
        ema, model = state["ema"], state["model"]
        ema = {key.removeprefix("module."): value for key, value in ema.items()}  # ModelEmaV3 wraps the model
        assert ema.keys() == model.keys() and any(not torch.equal(ema[key], model[key]) for key in model)
    else:
        assert state["ema"] is None


@pytest.mark.parametrize("recipe", sorted(RECIPE_CHECKS))
def test_a_recipe_is_its_papers_table(recipe, tmp_path):
    from train.config import RECIPES, parse_config

    config = dataclasses.asdict(parse_config(["--recipe", recipe, "--data", str(tmp_path)]))
    expected, lr_per_sample = RECIPE_CHECKS[recipe]
    assert {key: config[key] for key in expected} == expected
    assert config["lr"] == pytest.approx(lr_per_sample * RECIPES[recipe]["total_batch"])


def test_the_bce_loss_is_timms(tmp_path):
    from timm.loss import BinaryCrossEntropy

    from train.config import parse_config
    from train.trainer import loss_function

    torch.manual_seed(0)
    logits = torch.randn(8, 10)
    targets = torch.softmax(torch.randn(8, 10) * 3, dim=1)  # soft, as mixed targets are
    for thresh in (None, 0.2):
        flags = ["--bce-loss"] + (["--bce-target-thresh", str(thresh)] if thresh is not None else [])
        config = parse_config(["--data", str(tmp_path), *flags])
        expected = BinaryCrossEntropy(smoothing=0.0, target_threshold=thresh)(logits, targets)
        torch.testing.assert_close(loss_function(config)(logits, targets), expected)


def test_the_speech_recipe_is_the_papers_with_torchs_adam(tmp_path):
    from train.config import parse_config
    from train.trainer import lr_factor, make_optimizer

    config = parse_config(["--recipe", "speech", "--data", str(tmp_path)])
    assert (config.dataset, config.model, config.batch_size, config.lr, config.epochs, config.milestones,
            config.mixup_alpha, config.mixup_warmup_epochs, config.channels_last, config.crop_size) == (
        "speechcommands", "lenet_speech", 100, pytest.approx(3e-3), 30, [10, 20], 0.2, 5, False, None)
    assert [lr_factor(epoch * 10, 10, config) for epoch in (0, 1, 9, 10, 20, 29)] == pytest.approx(
        [0.01, 1, 1, 0.1, 0.01, 0.01])  # a one-epoch warm-up from 1%
    model = create_model("lenet_speech", 35)
    optimizer = make_optimizer(parse_config(["--recipe", "speech", "--data", str(tmp_path), "--weight-decay", "1e-4"]),
                               model)
    assert type(optimizer) is torch.optim.Adam
    assert [(g["weight_decay"], len(g["params"])) for g in optimizer.param_groups] == [(1e-4, 8)]


def test_a_warm_up_starts_at_one_percent_unless_the_recipe_says_otherwise(tmp_path):
    from train.config import parse_config
    from train.trainer import lr_factor

    config = parse_config(["--data", str(tmp_path), "--warmup-epochs", "2"])
    assert [lr_factor(step, 10, config) for step in (0, 10, 20)] == pytest.approx([0.01, 0.505, 1.0])
    imagenet = parse_config(["--recipe", "imagenet", "--data", str(tmp_path)])
    assert lr_factor(0, 10, imagenet) == pytest.approx(0.25)


@pytest.mark.parametrize("name", ["lenet_speech", "vgg11_speech"])
@pytest.mark.parametrize("rows", [161, 160])
def test_speech_models_take_the_papers_and_the_codes_spectrograms(name, rows):
    model = create_model(name, 35)
    assert model(torch.zeros(2, 1, rows, 101)).shape == (2, 35)


def test_channels_last_speech_models_give_the_same_logits_on_the_loaders_spectrograms(spoken_dir):
    # --channels-last on speech changes the model's memory only: a [B, 1, H, W] batch is the same bytes in
    # either format, so the loader's spectrograms go in as they come.
    from train.config import parse_config

    root, _ = spoken_dir
    assert parse_config(["--recipe", "speech", "--data", str(root), "--channels-last"]).channels_last
    spectrograms, _ = next(iter(make_loader(dataset="speechcommands", root=str(root), split="val", batch_size=4,
                                            device="cpu", num_threads=1)))
    torch.manual_seed(0)
    model = create_model("vgg11_speech", 35).eval()
    expected = model(spectrograms)
    model = model.to(memory_format=torch.channels_last)
    assert model.features(spectrograms).is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(model(spectrograms), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("opt", ["adamw", "lamb"])
def test_adamw_and_lamb_leave_biases_and_norms_undecayed_as_timm_does(tmp_path, opt):
    from timm.optim import param_groups_weight_decay

    from train.config import parse_config
    from train.trainer import make_optimizer

    model = create_model("resnet18", 10)
    config = parse_config(["--data", str(tmp_path), "--opt", opt, "--weight-decay", "0.05"])
    groups = make_optimizer(config, model).param_groups
    expected = param_groups_weight_decay(model, weight_decay=0.05)
    assert [(g["weight_decay"], {id(p) for p in g["params"]}) for g in groups] == [
        (g["weight_decay"], {id(p) for p in g["params"]}) for g in expected]


@pytest.mark.parametrize("name, kind", [("resnet8", "PreActResNet"), ("mobilenet_v3_small", "MobileNetV3"),
                                        ("resnet10t", "ResNet"), ("timm:resnet18", "ResNet")])
def test_models_come_from_us_torchvision_or_timm(name, kind):
    model = create_model(name, 7)
    assert type(model).__name__ == kind
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 7)
    assert type(model).__module__.split(".")[0] == {"resnet10t": "timm", "timm:resnet18": "timm"}.get(
        name, type(model).__module__.split(".")[0])


def test_label_corruption_changes_exactly_the_fraction_fixed_by_seed():
    labels = np.arange(1000) % 10
    noisy = corrupt_labels(None, labels, 10, 0.5, seed=3)
    assert (noisy != labels).sum() == 500 and ((0 <= noisy) & (noisy < 10)).all()
    assert np.array_equal(noisy, corrupt_labels(None, labels, 10, 0.5, seed=3))
    assert not np.array_equal(noisy, corrupt_labels(None, labels, 10, 0.5, seed=4))


def test_corrupted_run_reports_both_training_errors(digits_dir, tmp_path):
    result = _train(["--recipe", "demo", "--data", digits_dir, "--epochs", 3, "--corrupt-labels", 0.5,
                     "--mixup-alpha", 0, "--out", tmp_path, "--threads", 2])
    assert result.returncode == 0, result.stderr[-3000:]
    # Exactly half of the labels the trainer wrote differ from the real ones.
    real = dict(line.rsplit(maxsplit=1) for line in (tmp_path / "train_eval_labels.rank0.txt").read_text().splitlines())
    noisy = dict(line.rsplit(maxsplit=1) for line in (tmp_path / "train_noisy_labels.rank0.txt").read_text().splitlines())
    assert real.keys() == noisy.keys() and len(real) == 1437
    changed = sum(int(real[f]) // 10 != int(noisy[f]) for f in real)
    assert changed == round(0.5 * 1437)
    # Three epochs in, the network predicts the real class: it is right on the real labels and wrong
    # on the corrupted ones (it has not memorized the noise yet). Measured: 0.33 and 0.96.
    row = _metrics(tmp_path)[-1]
    assert row["train_error_corrupted"] > row["train_error_real"] + 0.4, row


def test_torchrun_restarts_a_killed_worker_from_the_last_checkpoint(digits_dir, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}  # a fresh store per restart (see the README)
    launcher = subprocess.Popen(
        [*TORCHRUN, "--standalone", "--nproc_per_node=2", "--max-restarts=1", "-m", "train", "--recipe", "demo",
         "--data", str(digits_dir), "--epochs", "4", "--batch-size", "32", "--threads", "1", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    try:
        deadline = time.time() + 300
        while not (out / "metrics.jsonl").exists() or len(_metrics(out)) < 2:
            assert launcher.poll() is None and time.time() < deadline, "the run ended before a worker could be killed"
            time.sleep(0.05)
        workers = subprocess.run(["pgrep", "-P", str(launcher.pid)], capture_output=True, text=True).stdout.split()
        assert len(workers) == 2
        os.kill(int(workers[1]), signal.SIGKILL)
        log = launcher.communicate(timeout=300)[0]
    finally:
        _kill_group(launcher)
    assert launcher.returncode == 0, log[-3000:]
    # No --resume: the restarted group resumes by itself, and says so.
    assert "(torchrun --max-restarts): resuming from" in log and "resuming at epoch" in log
    assert [row["epoch"] for row in _metrics(out)] == [0, 1, 2, 3]


def test_max_restarts_with_the_shared_store_is_refused(digits_dir, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TORCH_DISABLE_SHARE_RDZV_TCP_STORE"}
    result = _train(["--recipe", "demo", "--data", digits_dir, "--epochs", 1, "--threads", 1, "--out", tmp_path],
                    launcher=[*TORCHRUN, "--standalone", "--nproc_per_node=2", "--max-restarts=1"], env=env)
    assert result.returncode != 0
    assert "TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1" in result.stderr
    assert not (tmp_path / "metrics.jsonl").exists()


class _UnbufferedPipe(io.StringIO):
    """stdout under PYTHONUNBUFFERED: every write reaches the pipe, shared by the ranks, at once."""

    def __init__(self):
        super().__init__()
        self.writes = []

    def write(self, text):
        self.writes.append(text)
        return super().write(text)


def test_a_log_line_is_one_write(monkeypatch):
    # A line in two writes lets another rank's line in between: CI read one rank's stop message
    # glued to the other rank's save message.
    pipe = _UnbufferedPipe()
    monkeypatch.setattr(sys, "stdout", pipe)
    log("rank 1: saved at epoch", 0)
    assert pipe.writes == ["rank 1: saved at epoch 0\n"]
