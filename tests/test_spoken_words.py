"""The Speech Commands-like maker: layout, WAV format, that the clips hold speech, the speaker split, determinism."""

import ctypes
import hashlib
import os
import re
import wave

import numpy as np
import pytest

from dali_mixup.datasets import main
from dali_mixup.spoken_words import (
    SPEAKERS,
    WORDS,
    background_noises,
    english_data,
    speaker_id,
    spoken_clip,
    synthesize,
    utterance,
    write_spoken_words,
)

PER_WORD = 4
CLIP_NAME = re.compile(r"^([0-9a-f]{8})_nohash_(\d+)\.wav$")
LISTS = ("validation_list.txt", "testing_list.txt")


def clips(root):
    """Every clip's path relative to ``root``, ``word/file.wav``, sorted."""
    return sorted(
        f"{word}/{name}" for word in os.listdir(root) if word != "_background_noise_" and (root / word).is_dir()
        for name in os.listdir(root / word)
    )


def read_wav(path):
    """(samples as floats in [-1, 1), the header's channels, sample width, rate and compression)."""
    with wave.open(str(path)) as f:
        header = (f.getnchannels(), f.getsampwidth(), f.getframerate(), f.getcomptype())
        return np.frombuffer(f.readframes(f.getnframes()), "<i2") / 32768.0, header


def readme_which_set(filename):
    """The Speech Commands README's which_set, written out again here, with 10% validation and 10% testing."""
    max_num_wavs_per_class = 2**27 - 1
    hash_name = re.sub(r"_nohash_.*$", "", os.path.basename(filename))
    hashed = hashlib.sha1(hash_name.encode()).hexdigest()
    percentage = (int(hashed, 16) % (max_num_wavs_per_class + 1)) * (100.0 / max_num_wavs_per_class)
    return "validation" if percentage < 10 else "testing" if percentage < 20 else "training"


def periodicity(samples, frame=640):
    """The strongest normalized autocorrelation at pitch lags (2.5-12.5 ms) among the 5 loudest 40 ms frames."""
    frames = samples[: len(samples) // frame * frame].reshape(-1, frame)
    best = 0.0
    for f in frames[np.argsort((frames**2).sum(axis=1))[-5:]]:
        f = f - f.mean()
        correlation = np.correlate(f, f, "full")[frame - 1 :]
        best = max(best, correlation[40:200].max() / correlation[0])
    return best


def test_layout_and_file_names_are_speech_commands(spoken_dir):
    root, splits = spoken_dir
    assert sorted(os.listdir(root)) == sorted([*WORDS, "_background_noise_", *LISTS])
    ids = {speaker_id(voice, variant) for voice, variant in SPEAKERS}
    for word in WORDS:
        takes = {}
        names = os.listdir(root / word)
        assert len(names) == PER_WORD, word
        for name in names:
            match = CLIP_NAME.match(name)
            assert match, name
            assert match[1] in ids, name
            takes.setdefault(match[1], []).append(int(match[2]))
        # A speaker's takes of one word are numbered 0, 1, 2, ...
        assert all(sorted(numbers) == list(range(len(numbers))) for numbers in takes.values()), (word, takes)
    assert sorted(sum(splits.values(), [])) == clips(root)


def test_every_clip_is_one_second_of_16khz_mono_16bit_pcm(spoken_dir):
    root, _ = spoken_dir
    for path in clips(root):
        samples, header = read_wav(root / path)
        assert header == (1, 2, 16000, "NONE"), path
        assert len(samples) == 16000, path
        assert os.path.getsize(root / path) == 44 + 2 * 16000, path  # nothing after the samples


def test_clips_hold_speech_louder_than_their_noise(spoken_dir):
    root, _ = spoken_dir
    voicing = []
    for path in clips(root):
        samples, _ = read_wav(root / path)
        frames = np.sqrt((samples.reshape(-1, 320) ** 2).mean(axis=1))  # 20 ms
        # Peaks are set to -16..-1 dBFS; the word is shorter than 1 s and the noise 12+ dB below it.
        assert np.abs(samples).max() > 10 ** (-18 / 20), path
        assert frames.max() > 10 ** (10 / 20) * frames.min(), path
        voicing.append(periodicity(samples))
    noise, _ = read_wav(root / "_background_noise_" / "white_noise.wav")
    # Voiced speech repeats at its pitch period; white noise does not (whispering speakers do not either).
    assert periodicity(noise[:16000]) < 0.2
    assert np.median(voicing) > 0.5, sorted(voicing)


def test_the_utterance_is_where_the_clip_says_it_put_it():
    noise = [background_noises(0)["white_noise"]]
    spans = []
    for seed in range(4):
        clean, start, stop = spoken_clip("marvin", "en-us", "m3", np.random.default_rng(seed), [])
        assert 0 <= start < stop <= 16000
        assert not clean[:start].any() and not clean[stop:].any()
        spans.append((start, stop))
        noisy, start, stop = spoken_clip("marvin", "en-us", "m3", np.random.default_rng(seed), noise)
        assert np.sum(noisy[start:stop] ** 2) > 0.9 * np.sum(noisy**2)
    # "marvin" takes about half a second, at a random offset each time.
    assert all(0.3 * 16000 < stop - start < 16000 for start, stop in spans), spans
    assert len({start for start, _ in spans}) == len(spans), spans


def test_the_utterance_is_espeaks_speech_trimmed_and_resampled_to_16khz():
    raw, rate = synthesize("seven", "en-gb-x-rp", "f2", 175, 50, seed=1)
    speech = utterance("seven", "en-gb-x-rp", "f2", 175, 50, seed=1)
    loud = np.flatnonzero(np.abs(raw) > 0.02 * np.abs(raw).max())
    trimmed = raw[loud[0] : loud[-1] + 1].astype(np.float64)
    assert rate == 22050 and len(raw) > len(trimmed) + 100  # espeak pads its speech with silence
    assert abs(len(speech) - len(trimmed) * 16000 / 22050) <= 1
    # The same wave, read at 16 kHz: linear interpolation of the raw samples comes within a few percent.
    expected = np.interp(np.arange(len(speech)) * 22050 / 16000, np.arange(len(trimmed)), trimmed)
    assert np.corrcoef(speech, expected)[0, 1] > 0.95


def test_splits_follow_the_readme_sha1_rule_and_keep_speakers_apart(spoken_dir):
    root, splits = spoken_dir
    listed = {}
    for name, split in zip(LISTS, ("validation", "testing")):
        lines = (root / name).read_text().splitlines()
        assert lines == sorted(set(lines)), name
        listed[split] = lines
    listed["training"] = sorted(set(clips(root)) - set(listed["validation"]) - set(listed["testing"]))
    for path in clips(root):
        assert path in listed[readme_which_set(path)], path
    assert listed == splits
    speakers = {split: {CLIP_NAME.match(os.path.basename(p))[1] for p in paths} for split, paths in listed.items()}
    assert all(speakers.values()), speakers
    assert not speakers["training"] & speakers["validation"]
    assert not speakers["training"] & speakers["testing"]
    assert not speakers["validation"] & speakers["testing"]


def test_the_speakers_give_every_split_enough_voices():
    ids = [speaker_id(voice, variant) for voice, variant in SPEAKERS]
    assert len(set(ids)) == len(ids) == 240
    counts = {split: 0 for split in ("training", "validation", "testing")}
    for name in ids:
        counts[readme_which_set(f"{name}_nohash_0.wav")] += 1
    assert counts["validation"] >= 15 and counts["testing"] >= 15, counts


def test_background_noises_are_what_they_are_named_and_never_listed(spoken_dir):
    root, _ = spoken_dir
    names = sorted(os.listdir(root / "_background_noise_"))
    assert names == ["brown_noise.wav", "mains_hum.wav", "pink_noise.wav", "white_noise.wav"]
    for name in LISTS:
        assert "_background_noise_" not in (root / name).read_text()
    power = {}
    for name in names:
        samples, header = read_wav(root / "_background_noise_" / name)
        assert header == (1, 2, 16000, "NONE") and len(samples) == 30 * 16000, name
        spectrum = np.abs(np.fft.rfft(samples)) ** 2
        frequency = np.fft.rfftfreq(len(samples), 1 / 16000)
        power[name] = [spectrum[(frequency >= low) & (frequency < 2 * low)].mean() for low in (100, 800, 3200)]
    # Per hertz, white is flat, pink falls 3 dB an octave and brown 6 dB: from the band at 100 Hz to
    # the one at 800 Hz is 3 octaves, from 800 Hz to 3,200 Hz 2 more.
    for name, per_octave in (("white_noise.wav", 0), ("pink_noise.wav", 3), ("brown_noise.wav", 6)):
        falls = -np.diff(10 * np.log10(power[name]))
        np.testing.assert_allclose(falls, [3 * per_octave, 2 * per_octave], atol=1, err_msg=name)
    hum, _ = read_wav(root / "_background_noise_" / "mains_hum.wav")
    spectrum = np.abs(np.fft.rfft(hum))
    assert np.fft.rfftfreq(len(hum), 1 / 16000)[spectrum.argmax()] in (50.0, 60.0)


def test_the_same_seed_writes_the_same_bytes_and_another_seed_does_not(tmp_path, spoken_dir):
    def contents(root):
        return {
            os.path.relpath(os.path.join(folder, name), root): open(os.path.join(folder, name), "rb").read()
            for folder, _, names in os.walk(root) for name in names
        }

    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        write_spoken_words(str(tmp_path / name), per_word=3, seed=seed, words=("yes", "marvin"))
    a, b, c = (contents(tmp_path / name) for name in "abc")
    assert a == b
    for folder in ("yes", "marvin", "_background_noise_"):
        in_a, in_c = ({path: data for path, data in d.items() if path.startswith(folder + os.sep)} for d in (a, c))
        assert in_a.keys() != in_c.keys() or all(in_a[path] != in_c[path] for path in in_a), folder
    # One word alone, long after the fixture was made in this process: the same clips as in the fixture.
    write_spoken_words(str(tmp_path / "yes"), per_word=PER_WORD, seed=0, words=["yes"])
    root, _ = spoken_dir
    assert contents(tmp_path / "yes" / "yes") == contents(root / "yes")


def test_synthesis_does_not_depend_on_what_was_said_before_and_takes_the_seed():
    first = synthesize("sheila", "en-us", "whisper", 160, 40, seed=3)
    synthesize("backward", "en-gb-scotland", "croak", 300, 90, seed=7)
    again = synthesize("sheila", "en-us", "whisper", 160, 40, seed=3)
    assert first[1] == again[1] == 22050
    np.testing.assert_array_equal(first[0], again[0])
    # Whispering is shaped noise from espeak's random generator.
    assert not np.array_equal(first[0], synthesize("sheila", "en-us", "whisper", 160, 40, seed=4)[0])


def test_the_english_data_speaks_exactly_like_the_whole_data(tmp_path):
    data = english_data(str(tmp_path / "data"))
    for voice, variant in [("en-gb-scotland", "whisper"), ("en-us-nyc", "klatt3"), ("en-029", "Alicia")]:
        whole = synthesize("forward", voice, variant, 160, 60, seed=2)
        np.testing.assert_array_equal(synthesize("forward", voice, variant, 160, 60, seed=2, data=data)[0], whole[0])


def test_a_bad_data_folder_raises_instead_of_ending_the_process(tmp_path):
    # espeak_Initialize calls exit(1) on a folder without phoneme data, unless told not to.
    (tmp_path / "voices" / "!v").mkdir(parents=True)
    (tmp_path / "voices" / "!v" / "m3").write_text("language variant\n")
    with pytest.raises(RuntimeError, match="espeak_Initialize failed"):
        synthesize("yes", "en", "m3", 175, 50, data=str(tmp_path))


def test_a_library_held_elsewhere_is_refused():
    import _ctypes

    import espeakng_loader

    held = ctypes.CDLL(espeakng_loader.get_library_path())
    try:
        with pytest.raises(RuntimeError, match="stays loaded"):
            synthesize("yes", "en", "m3", 175, 50)
    finally:
        _ctypes.dlclose(held._handle)
    assert len(synthesize("yes", "en", "m3", 175, 50)[0]) > 0


def test_cli_writes_what_the_function_writes(tmp_path, capsys):
    main(["spoken-words", str(tmp_path / "cli"), "--per-word", "1", "--seed", "2"])
    assert re.match(r"wrote 35 clips to .*cli: \d+ training, \d+ validation, \d+ testing", capsys.readouterr().out)
    write_spoken_words(str(tmp_path / "api"), per_word=1, seed=2)
    for path in [*clips(tmp_path / "api"), *LISTS, "_background_noise_/pink_noise.wav"]:
        assert (tmp_path / "cli" / path).read_bytes() == (tmp_path / "api" / path).read_bytes(), path


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--per-word", "0"], "--per-word must be >= 1, got 0"),
        (["--seed", "-1"], "seed must be >= 0, got -1"),
        (["--per-word", "x"], "invalid int value"),
    ],
)
def test_cli_refuses_bad_arguments(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit):
        main(["spoken-words", str(tmp_path / "out"), *argv])
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        ({"per_word": 0}, ValueError, "per_word must be >= 1, got 0"),
        ({"per_word": 2.0}, TypeError, "per_word must be an int, got float"),
        ({"seed": -1}, ValueError, "seed must be >= 0, got -1"),
        ({"seed": True}, TypeError, "seed must be an int, got bool"),
        ({"words": "yes"}, TypeError, "words must be a list or tuple of str"),
        ({"words": ["yes", 1]}, TypeError, "words must be a list or tuple of str"),
        ({"words": []}, ValueError, "words must hold at least one word"),
        ({"words": ["Yes"]}, ValueError, "lowercase ASCII letters only .* got 'Yes'"),
        ({"words": ["_background_noise_"]}, ValueError, "lowercase ASCII letters only"),
        ({"words": ["yes", "no", "yes"]}, ValueError, "words must be unique"),
    ],
)
def test_bad_arguments_raise_and_write_nothing(tmp_path, kwargs, error, message):
    with pytest.raises(error, match=message):
        write_spoken_words(str(tmp_path / "out"), **{"per_word": 1, "words": ["yes"], **kwargs})
    assert not (tmp_path / "out").exists()


def test_out_must_be_a_missing_or_empty_folder(tmp_path):
    (tmp_path / "stale").mkdir()
    (tmp_path / "stale" / "old.wav").write_bytes(b"")
    (tmp_path / "file").write_bytes(b"")
    for out in ("stale", "file"):
        with pytest.raises(ValueError, match="out must be a missing or empty folder"):
            write_spoken_words(str(tmp_path / out), per_word=1, words=["yes"])
    with pytest.raises(TypeError, match="out must be a path"):
        write_spoken_words(None, per_word=1, words=["yes"])
    (tmp_path / "empty").mkdir()
    write_spoken_words(tmp_path / "empty", per_word=1, words=["yes"])
    assert len(os.listdir(tmp_path / "empty" / "yes")) == 1


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"voice": "en-xx"}, "voice must be an espeak-ng voice name .* got 'en-xx'"),
        ({"variant": "m99"}, "variant must be a file in espeak-ng-data/voices/!v, got 'm99'"),
        ({"text": "caf\u00e9"}, "text must be a non-blank ASCII str"),
        ({"text": " "}, "text must be a non-blank ASCII str"),
        ({"rate": 50}, "rate must be 80..450 and pitch 0..100, got 50 and 50"),
        ({"pitch": 101}, "rate must be 80..450 and pitch 0..100, got 175 and 101"),
    ],
)
def test_synthesize_refuses_what_espeak_would_get_wrong(kwargs, message):
    with pytest.raises(ValueError, match=message):
        synthesize(**{"text": "yes", "voice": "en", "variant": "m3", "rate": 175, "pitch": 50, **kwargs})
    # A refused call leaves the library unloaded; were it still loaded, this call would say so.
    assert len(synthesize("yes", "en", "m3", 175, 50)[0]) > 0
