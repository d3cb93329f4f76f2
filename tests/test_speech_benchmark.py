"""benchmarks.speech: its DataLoader baseline computes DALI's spectrograms, and a small run writes the JSON and chart."""

import json
import subprocess
import sys
import wave

import numpy as np
import pytest
import torch
from conftest import DEVICES

from benchmarks import speech
from helpers import spectrograms, write_pcm


@pytest.mark.parametrize("device", DEVICES)
def test_the_dataloader_baseline_computes_the_dali_spectrograms(spoken_dir, tmp_path, device):
    # Like for like: the Dataset of the torch_dataloader configurations (wave, torch.stft) gives the
    # DALI pipeline's spectrogram, on spoken words and on short, long, stereo and silent clips.
    root, splits = spoken_dir
    dataset = speech.SpokenClips(root)
    clips = [root / clip for clip in splits["training"][:4]]
    assert [str(path) for path in clips] == dataset.files[:4]
    word = speech.read_wav(clips[0]).numpy()
    write_pcm(tmp_path / "short.wav", word[:4000])  # 26 frames, padded with zeros to 101
    write_pcm(tmp_path / "long.wav", np.tile(word, 3))  # cut at 101 frames
    write_pcm(tmp_path / "stereo.wav", np.stack([word, 0.5 * np.roll(word, 30)], axis=1))  # averaged
    write_pcm(tmp_path / "silence.wav", np.zeros(16000))  # std 0: left as it is
    odd = [tmp_path / f"{name}.wav" for name in ("short", "long", "stereo", "silence")]
    files = clips + odd
    for path, want in zip(files, spectrograms(files, device)):
        got = speech.log_spectrogram(speech.read_wav(path))
        assert got.shape == (1, 161, 101) and got.dtype == torch.float32, path
        assert np.abs(got.numpy() - want).max() < 1e-3, path
        if path != odd[-1]:  # the unbiased std, which the 1e-3 above cannot tell from the biased one
            assert abs(got.double().std() - 1) < 1e-5, path
    spectrogram, label = dataset[0]
    assert torch.equal(spectrogram, speech.log_spectrogram(speech.read_wav(clips[0]))) and label == dataset.labels[0]
    assert not speech.log_spectrogram(speech.read_wav(odd[-1])).any()


def test_the_baseline_refuses_what_it_cannot_read(tmp_path):
    write_pcm(tmp_path / "44k.wav", np.zeros(44100), rate=44100)
    with pytest.raises(ValueError, match="44100 Hz; the torch_dataloader baseline reads 16000 Hz clips only"):
        speech.read_wav(tmp_path / "44k.wav")
    with wave.open(str(tmp_path / "8bit.wav"), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(1)
        f.setframerate(16000)
        f.writeframes(bytes(160))
    with pytest.raises(ValueError, match="8-bit samples"):
        speech.read_wav(tmp_path / "8bit.wav")
    with pytest.raises(SystemExit):
        speech.main(["--no-such-option"])


@pytest.mark.parametrize("argv, message", [(["--runs", "0"], "--runs must be >= 1, got 0"),
                                           (["--workers", "-1"], "--workers must be >= 0, got -1"),
                                           (["--batches", "-2"], "--batches must be >= 0, got -2")])
def test_bad_counts_are_usage_errors_naming_the_option(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        speech.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_measure_times_the_second_of_two_epochs_or_the_batches_after_the_first():
    started, taken = [], []

    def epoch():
        started.append(len(started))
        for k in range(5):
            taken.append(k)
            yield torch.zeros(3, 1), None

    assert speech.measure(epoch, "cpu") > 0 and len(started) == 2 and len(taken) == 10
    started.clear(), taken.clear()
    assert speech.measure(epoch, "cpu", batches=2) > 0 and len(started) == 1 and taken == [0, 1, 2]


def test_a_small_run_writes_the_json_and_the_chart(spoken_dir, tmp_path):
    root, _ = spoken_dir
    out, chart = tmp_path / "speech.json", tmp_path / "chart.png"
    args = ["--device", "cpu", "--data", root, "--runs", 1, "--batch-size", 8, "--batches", 2, "--threads", 1,
            "--workers", 1, "--json", out, "--png", chart]
    result = subprocess.run([sys.executable, "-m", "benchmarks.speech", *map(str, args)], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(report) == {"env", "command", "settings", "results", "runs", "ratios", "targets"}
    assert {"cpu", "cores", "gpu", "driver", "python", "torch", "dali"} <= set(report["env"])
    assert report["command"].startswith("python -m benchmarks.speech --device cpu")
    settings = report["settings"]
    assert settings["clips"] == len(speech.SpokenClips(root)) and settings["timed_batches"] == 2
    assert settings["batches_per_epoch"] == settings["clips"] // 8 and settings["workers"] == 1
    assert set(report["results"]) == set(report["runs"]) == set(speech.CONFIGS)
    assert all(len(values) == 1 and values[0] > 0 for values in report["runs"].values())
    assert set(report["ratios"]) == set(speech.RATIOS) and min(report["ratios"].values()) > 0
    assert report["targets"] == {"dali_mixup / dali": 0.97}
    assert "| `dali_mixup / dali` |" in result.stdout and "| `torch_dataloader` |" in result.stdout
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
