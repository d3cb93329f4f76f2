"""Speech Commands through make_loader: the splits, the spectrograms against NumPy, mixing, and bad audio."""

import os
import shutil
import wave

import numpy as np
import pytest
import torch
from conftest import DEVICES
from nvidia.dali import fn, pipeline_def, types

from dali_mixup import formats, make_loader, mixup
from dali_mixup.mixup import Mixing, mixing_draws
from dali_mixup import speech_reference as reference
from dali_mixup.reference import mixup_reference
from dali_mixup.spoken_words import utterance, write_wav
from helpers import spectrograms, write_pcm
from pipelines.speech import log_spectrogram


def read_wav(path):
    """``([N, channels] floats, rate)`` with the standard library, as DALI scales int16 (/ 32768)."""
    with wave.open(str(path)) as f:
        pcm = np.frombuffer(f.readframes(f.getnframes()), "<i2")
        return (pcm / 32768.0).reshape(-1, f.getnchannels()), f.getframerate()


@pytest.fixture(scope="module")
def odd_clips(tmp_path_factory):
    """Real speech in the shapes a user's data comes in: 44.1 kHz stereo, short, long, silent."""
    root = tmp_path_factory.mktemp("odd")
    speech = utterance("seven", "en-us", "m3", 170, 50) / 32768 * 3  # 16 kHz, peak near -6 dBFS
    one_second = np.pad(speech, (800, 16000 - 800 - len(speech)))
    # The other channel quieter and delayed, so that the downmix is not one channel's copy.
    at_44k = reference.resample(one_second, 16000, 44100)
    write_pcm(root / "stereo_44k.wav", np.stack([at_44k, 0.5 * np.roll(at_44k, 30)], axis=1), 44100)
    write_pcm(root / "short.wav", speech[:4000], 16000)  # 0.25 s: padded with zero frames
    write_pcm(root / "long.wav", np.tile(one_second, 3), 16000)  # 3 s: cut at 101 frames
    write_pcm(root / "silence.wav", np.zeros(16000), 16000)  # std 0: left as it is, no NaN
    return root


def _uses_log_spectrogram(device):
    """Whether ``log_spectrogram`` builds the plugin's LogSpectrogram (else DALI's own operators)."""

    @pipeline_def(batch_size=1, num_threads=1, device_id=0 if device == "gpu" else None)
    def pipe():
        return log_spectrogram(fn.external_source(name="clips"), device)

    return "LogSpectrogram" in str(pipe().serialize())


SPECTROGRAM_PATHS = [("cpu", "plugin"), ("cpu", "graph"), pytest.param("gpu", "graph", marks=pytest.mark.gpu)]


@pytest.mark.parametrize("device, path", SPECTROGRAM_PATHS, ids=["cpu-plugin", "cpu-graph", "gpu"])
def test_spectrograms_equal_the_numpy_reference(spoken_dir, odd_clips, device, path, monkeypatch):
    """On the CPU the plugin's LogSpectrogram, and without it (and on the GPU) DALI's operators."""
    if path == "graph":
        monkeypatch.setenv("DALI_MIXUP_FUSED", "0")
    root, splits = spoken_dir
    clips = [root / clip for clip in splits["training"][:6]]
    odd = [odd_clips / f"{name}.wav" for name in ("stereo_44k", "short", "long", "silence")]
    got = spectrograms(clips + odd, device)
    tolerance = 2e-5 if path == "plugin" else 1e-3  # measured: the plugin's float32 FFT within 4e-6, DALI's 3e-6
    for clip, spectrogram in zip(clips + odd, got):
        assert spectrogram.shape == (1, 161, 101) and spectrogram.dtype == np.float32, clip
        want = reference.log_spectrogram(*read_wav(clip))
        assert np.abs(spectrogram - want).max() < tolerance, clip
        if clip != odd[-1]:  # the unbiased std, which the tolerance above cannot tell from the biased one
            assert abs(spectrogram.astype(np.float64).std(ddof=1) - 1) < 1e-5, clip
    silent = got[-1]
    assert np.all(silent == 0)
    assert (_uses_log_spectrogram(device) == (path == "plugin")), path
    # The reference is not trivially met: the stereo clip's rows are not those of either channel alone.
    samples, rate = read_wav(odd[0])
    assert np.abs(reference.log_spectrogram(samples[:, 0], rate) - got[len(clips)]).max() > 0.05
    # Short: the frames past its end are the zero padding, standardized with the rest.
    short = got[len(clips) + 1][0]
    assert np.ptp(short[:, 30:]) == 0 and np.ptp(short[:, :20]) > 1


def test_splits_are_torchaudios(spoken_dir):
    """val and test: exactly the lists; train: every other clip; classes: the word folders, sorted."""
    root, splits = spoken_dir
    words = sorted(entry for entry in os.listdir(root) if entry != "_background_noise_" and (root / entry).is_dir())
    for split, listed in (("train", "training"), ("val", "validation"), ("test", "testing")):
        files, labels, classes = formats.speech_commands(str(root), split)
        assert classes == words and len(words) == 35
        assert [os.path.relpath(f, root) for f in files] == splits[listed]
        assert [classes[label] for label in labels] == [clip.split("/")[0] for clip in splits[listed]]
    with open(root / "validation_list.txt") as f:
        assert [line.strip() for line in f] == splits["validation"]


@pytest.mark.parametrize("device", DEVICES)
def test_every_eval_clip_once_across_ranks_with_its_label(spoken_dir, device):
    root, splits = spoken_dir
    files, labels, _ = formats.speech_commands(str(root), "test")
    seen = []
    for rank in range(2):
        loader = make_loader(dataset="speechcommands", root=root, split="test", batch_size=4, device=device,
                             rank=rank, world_size=2, num_threads=1)
        for spectrograms, targets in loader:
            assert spectrograms.shape[1:] == (1, 161, 101) and targets.dtype == torch.int64
            seen += [(float(s.abs().sum()), int(t)) for s, t in zip(spectrograms.cpu(), targets.cpu())]
    assert sorted(t for _, t in seen) == sorted(labels)
    want = sorted(float(np.abs(reference.log_spectrogram(*read_wav(f))).astype(np.float32).sum()) for f in files)
    np.testing.assert_allclose(sorted(s for s, _ in seen), want, rtol=1e-4)


@pytest.mark.parametrize("cutmix", [False, True])
@pytest.mark.parametrize("device", DEVICES)
def test_train_mixes_spectrograms_as_the_reference(spoken_dir, device, cutmix):
    """mixup (or CutMix, a time-frequency box) on the spectrograms in the graph, as mixup_reference, per sample."""
    root, splits = spoken_dir
    files, labels, _ = formats.speech_commands(str(root), "train")
    files, labels = files[::10][:8], labels[::10][:8].tolist()

    @pipeline_def(batch_size=8, num_threads=1, device_id=0 if device == "gpu" else None, seed=3)
    def pipe():
        encoded, label = fn.readers.file(files=files, labels=labels)
        plain = log_spectrogram(encoded, device)
        box = {"cutmix_alpha": 1.0, "switch_prob": 1.0, "output_layout": "CHW"} if cutmix else {}
        return (plain, *mixup(plain, label, num_classes=35, alpha=1.0, per_sample=True, return_params=True, **box))

    p = pipe()
    p.build()
    plain, mixed, targets, lam, perm, *box = (torch.from_numpy(np.array(o.as_tensor().as_cpu() if device == "gpu"
                                                                        else o.as_tensor())) for o in p.run())
    want_images, want_targets = mixup_reference(plain, torch.tensor(labels), lam, perm.long(), 35,
                                                box=box[0] if cutmix else None)
    torch.testing.assert_close(mixed, want_images, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(targets, want_targets)
    assert (targets.max(dim=1).values < 0.999).sum() >= 4  # α = 1 per sample: most rows soft


@pytest.mark.parametrize("mixing", [dict(alpha=1.0, per_sample=True), dict(alpha=0.4, label_smoothing=0.1),
                                    dict(alpha=1.0, cutmix_alpha=1.0, per_sample=True, prob=0.8)],
                         ids=["mixup-elem", "mixup-smoothing", "switch-prob"])
def test_the_plugin_mixes_spectrograms_in_its_standardizing_pass(spoken_dir, mixing):
    """LogSpectrogram with the labels and the draws mixes as mixup_reference mixes its own unmixed features."""
    from pipelines import speech

    root, _ = spoken_dir
    files, labels, _ = formats.speech_commands(str(root), "train")
    files, labels = files[::10][:8], labels[::10][:8].tolist()
    mix = Mixing(**mixing)

    @pipeline_def(batch_size=8, num_threads=2, device_id=None, seed=4)
    def pipe():
        encoded, label = fn.readers.file(files=files, labels=labels)
        plain = log_spectrogram(encoded, "cpu")
        lam, perm, box = mixing_draws(mix, (161, 101))
        box = box if box is not None else fn.cast(perm * 0, dtype=types.INT32) + types.Constant(np.zeros(4, np.int32))
        mixed, targets = fn.log_spectrogram(speech._decode(encoded), fn.cast(label, dtype=types.INT32), lam=lam,
                                            partner=perm, box=box, window=speech.HAMMING, hop=speech.HOP,
                                            frames=speech.FRAMES, num_classes=35,
                                            label_smoothing=float(mix.label_smoothing))
        return plain, mixed, targets, lam, perm, box

    p = pipe()
    p.build()
    for _ in range(3):
        plain, mixed, targets, lam, perm, box = (torch.from_numpy(np.array(o.as_tensor())) for o in p.run())
        want, want_targets = mixup_reference(plain, torch.tensor(labels), lam, perm.long(), 35,
                                             label_smoothing=mix.label_smoothing, box=box)
        torch.testing.assert_close(mixed, want, atol=2e-5, rtol=1e-5)
        torch.testing.assert_close(targets, want_targets)
    assert (lam < 0.99).any()


@pytest.mark.parametrize("path", ["plugin", "graph"])
def test_the_train_loader_mixes_and_shuffles(spoken_dir, path, monkeypatch):
    """On the CPU the plugin's LogSpectrogram mixes; without it (and on the GPU) the graph's mixup does."""
    if path == "graph":
        monkeypatch.setenv("DALI_MIXUP_FUSED", "0")
    root, _ = spoken_dir
    loader = make_loader(dataset="speechcommands", root=root, split="train", batch_size=16, device="cpu",
                         mixup_alpha=1.0, num_threads=2)
    assert len(loader) == len(formats.speech_commands(str(root), "train")[0]) // 16
    epochs = [[targets for _, targets in loader] for _ in range(2)]
    assert len(epochs[0]) == len(loader)
    rows = torch.cat(epochs[0])
    assert rows.shape[1] == 35 and torch.allclose(rows.sum(1), torch.ones(len(rows)))
    assert (rows.max(1).values < 0.999).float().mean() > 0.5
    assert not torch.equal(torch.cat(epochs[0]), torch.cat(epochs[1]))


def make_set(root, clips):
    """A Speech Commands root holding ``clips`` ({"word/name.wav": samples or bytes}) and empty lists."""
    for clip, content in clips.items():
        os.makedirs(root / clip.split("/")[0], exist_ok=True)
        if isinstance(content, bytes):
            (root / clip).write_bytes(content)
        else:
            write_wav(str(root / clip), content)
    for name in ("validation_list.txt", "testing_list.txt"):
        (root / name).touch()
    return root


def test_broken_clips_are_named(tmp_path, spoken_dir):
    """A text file named .wav, a WAV with no samples: the error names each, and what is wrong with it."""
    root, splits = spoken_dir
    good = (root / splits["training"][0]).read_bytes()
    bad = make_set(tmp_path / "bad", {f"yes/{k:08x}_nohash_0.wav": good for k in range(6)})
    (bad / "yes/00000001_nohash_0.wav").write_text("this is not audio\n" * 20)
    empty = tmp_path / "empty.wav"
    write_wav(str(empty), np.zeros(0))
    shutil.copy(empty, bad / "yes/00000004_nohash_0.wav")
    loader = make_loader(dataset="speechcommands", root=bad, split="train", batch_size=6, device="cpu", num_threads=1)
    with pytest.raises(RuntimeError) as caught:
        next(iter(loader))
    message = str(caught.value)
    assert "2 file(s) are broken" in message
    assert "00000001_nohash_0.wav: is not audio" in message
    assert "00000004_nohash_0.wav: is a WAV with no samples" in message


def test_a_truncated_wav_is_read_as_far_as_it_goes_and_reported_by_the_sniffer(tmp_path, spoken_dir):
    root, splits = spoken_dir
    data = (root / splits["training"][0]).read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: len(data) // 2])
    assert formats.sniff_audio(str(cut)).startswith("is a truncated WAV (its header promises 32000 bytes")
    (got,) = spectrograms([cut], "cpu")
    samples, rate = read_wav(root / splits["training"][0])
    assert np.abs(got - reference.log_spectrogram(samples[: (len(data) // 2 - 44) // 2], rate)).max() < 1e-3
    assert np.isfinite(got).all()


def test_layout_problems_are_named(tmp_path, spoken_dir):
    root, splits = spoken_dir
    clip = read_wav(root / splits["training"][0])[0][:, 0]
    bad = make_set(tmp_path / "bad", {"yes/0000aaaa_nohash_0.wav": clip, "yes/notes.wav": clip,
                                      "no/0000bbbb_nohash_0.wav": clip})
    os.makedirs(bad / "up")
    (bad / "validation_list.txt").write_text("yes/0000aaaa_nohash_0.wav\nyes/0000aaaa_nohash_0.wav\nno/gone.wav\n")
    (bad / "testing_list.txt").write_text("yes/0000aaaa_nohash_0.wav\n")
    with pytest.raises(ValueError) as caught:
        formats.speech_commands(str(bad), "train")
    message = str(caught.value)
    assert "5 problem(s)" in message
    assert f"{bad / 'yes' / 'notes.wav'}: not a clip" in message
    assert f"{bad / 'up'}: empty word folder" in message
    assert "validation_list.txt, line 2: 'yes/0000aaaa_nohash_0.wav' is listed again (first on line 1)" in message
    assert "validation_list.txt, line 3: 'no/gone.wav' is not a clip" in message
    assert "yes/0000aaaa_nohash_0.wav is in both validation_list.txt and testing_list.txt" in message
    (bad / "testing_list.txt").unlink()
    with pytest.raises(FileNotFoundError, match="testing_list.txt is missing"):
        formats.speech_commands(str(bad), "val")


@pytest.mark.parametrize("kwargs, message", [
    ({"hflip": 0.0}, "hflip apply to image datasets"),
    ({"crop_size": 64, "channels_last": True}, "crop_size, channels_last apply to image datasets"),
    ({"auto_augment": "rand-m9-n2"}, "auto_augment apply to image datasets"),
    ({"split": "test", "mixup_alpha": 0.2}, "apply to split='train' only"),
    ({"split": "validation"}, "split must be one of ('train', 'val', 'test') for dataset='speechcommands'"),
])
def test_options_that_do_not_apply_to_audio_are_refused(spoken_dir, kwargs, message):
    root, _ = spoken_dir
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_loader(**{"dataset": "speechcommands", "root": root, "device": "cpu", **kwargs})


def test_image_datasets_have_no_test_split(imagenet_dir):
    with pytest.raises(ValueError, match=r"split must be one of \('train', 'val'\) for dataset='imagefolder'"):
        make_loader(dataset="imagefolder", root=imagenet_dir / "val", split="test", device="cpu")


def test_check_data_lists_exactly_the_bad_clips(tmp_path, spoken_dir):
    """Empty, truncated, not audio, a bad list line: each named once, the sound set passes."""
    import subprocess
    import sys

    def check_data(root):
        result = subprocess.run([sys.executable, "-m", "dali_mixup.check_data", str(root), "--threads", "1"],
                                capture_output=True, text=True, timeout=300)
        return result.returncode, result.stdout.splitlines()

    root, splits = spoken_dir
    assert check_data(root) == (0, [])
    bad = tmp_path / "bad"
    shutil.copytree(root, bad)
    clip = bad / splits["training"][0]
    data = clip.read_bytes()
    clip.write_bytes(data[: len(data) // 3])
    (bad / splits["training"][1]).write_text("not audio at all\n" * 10)
    write_wav(str(bad / splits["testing"][0]), np.zeros(0))
    # A WAV whose header looks whole but has no format chunk: only decoding finds it.
    no_format = bad / splits["training"][2]
    no_format.write_bytes(b"RIFF" + (4 + 8 + 3200).to_bytes(4, "little") + b"WAVE" + b"data"
                          + (3200).to_bytes(4, "little") + bytes(3200))
    with open(bad / "validation_list.txt", "a") as f:
        f.write("yes/ffffffff_nohash_9.wav\n")
    status, lines = check_data(bad)
    assert status == 1
    assert sorted(lines) == sorted([
        f"{bad}/validation_list.txt, line {len(splits['validation']) + 1}: 'yes/ffffffff_nohash_9.wav' is not a clip "
        f"of a word folder in {bad}",
        f"{clip}: is a truncated WAV (its header promises 32000 bytes of samples, the file holds {len(data) // 3 - 44})",
        f"{bad / splits['training'][1]}: is not audio (not a WAV, FLAC or Ogg signature)",
        f"{bad / splits['testing'][0]}: is a WAV with no samples",
        f"{no_format}: does not decode (Failed to open encoded data: Error in WAV file. No 'data' chunk marker.)",
    ])
