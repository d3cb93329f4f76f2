"""A small stand-in for Google Speech Commands, made of real synthesized speech.

    python -m dali_mixup.datasets spoken-words OUT [--per-word N] [--seed S]

Speech Commands cannot be downloaded here, so the words are spoken by espeak-ng (the library and
its voice data ship in the ``espeakng-loader`` wheel; it is driven through ``ctypes``) and written
in exactly the dataset's layout, so that any Speech Commands reader takes it unchanged:

- ``OUT/<word>/<speaker>_nohash_<n>.wav``: 16-bit PCM mono WAV at 16 kHz, exactly 1 s (16,000
  samples); ``<speaker>`` is 8 hex digits, ``<n>`` counts the speaker's takes of that word;
- ``OUT/validation_list.txt``, ``OUT/testing_list.txt``: one ``word/file.wav`` per line, sorted;
  every clip in neither list is for training, as in the real set;
- ``OUT/_background_noise_/*.wav``: 30 s each of white, pink and brown noise and a mains hum,
  never in the lists.

A speaker is an espeak voice (an English accent) with a voice variant (``m3``, ``f2``, ``croak``,
``whisper``, ...): 8 voices x 30 variants = 240 speakers, each with its own base rate and pitch,
jittered per clip. Each utterance is trimmed of espeak's leading and trailing silence, resampled
from 22,050 to 16,000 Hz, scaled to a random peak level (-16 to -1 dBFS) and put at a random
offset in the 1 s window. An utterance longer than 1 s would be cut at 1 s; at these rates the
longest default word ("marvin" by the slowest speaker) lasts 0.93 s, the median one about 0.5 s.
80% of the clips get a random slice of a background noise 12 to 35 dB below the speech.

Clips are split by speaker exactly as the Speech Commands README's ``which_set`` does it (SHA-1 of
the name before ``_nohash_``; 10% validation, 10% testing), so validation and test voices are never
heard in training; of the 240 speakers, 20 are for validation and 21 for testing. The default 35
words x 30 takes make 1,050 clips: 869 for training (196 speakers), 103 for validation (20) and 78
for testing (21). Making them takes about 6 s of CPU time; espeak speaks on one core, so that is
the time on two cores too (13 s of wall time on a two-core machine busy with other work).

The output is the same byte for byte for the same ``seed``. espeak-ng keeps its synthesis state
(oscillator phases, pitch flutter, echo buffer, a random generator seeded from the clock) in static
variables that ``espeak_Terminate`` and ``espeak_Initialize`` leave alone, so one process speaking
the same word twice gets two slightly different waves. Each utterance is therefore spoken by a
freshly loaded library (dlopen, initialize, speak, dlclose) with its random generator seeded
explicitly; this holds only while nothing else in the process keeps libespeak-ng loaded, which
:func:`synthesize` checks. Reloading costs 4 ms an utterance with the voice data trimmed to English
(:func:`english_data`), 7 ms without.
"""

import _ctypes
import ctypes
import functools
import hashlib
import os
import re
import shutil
import tempfile
import threading
import wave
import zlib

import espeakng_loader
import numpy as np
from scipy.signal import firwin, resample_poly

# Speech Commands v0.02's 35 words.
WORDS = (
    "backward", "bed", "bird", "cat", "dog", "down", "eight", "five", "follow", "forward", "four", "go",
    "happy", "house", "learn", "left", "marvin", "nine", "no", "off", "on", "one", "right", "seven",
    "sheila", "six", "stop", "three", "tree", "two", "up", "visual", "wow", "yes", "zero",
)
# espeak-ng's English voices, by the names espeak_SetVoiceByName takes (en-Shaw reads the Shavian
# alphabet, so it is left out).
VOICES = (
    "en", "en-us", "en-029", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-gb-x-rp", "en-us-nyc",
)
# Files in espeak-ng-data/voices/!v: men, women, old, whispering, creaky and Klatt-synthesized voices.
VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "croak", "whisper",
    "whisperf", "klatt", "klatt3", "grandma", "grandpa", "aunty", "Alicia", "Andy", "steph", "rob",
    "linda", "john", "belinda", "edward", "quincy", "max",
)
SPEAKERS = tuple((voice, variant) for voice in VOICES for variant in VARIANTS)
SAMPLE_RATE = 16000
# From the Speech Commands README's which_set.
MAX_NUM_WAVS_PER_CLASS = 2**27 - 1

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
# Without it, espeak_Initialize ends the whole process (exit(1)) when the data folder is unusable.
_INITIALIZE_DONT_EXIT = 0x8000
_ESPEAK_RATE, _ESPEAK_VOLUME, _ESPEAK_PITCH = 1, 2, 3
# Half the normal volume: at 100 the loudest variants saturate inside espeak; levels are set later.
_VOLUME = 50
_NOISE_SECONDS = 30
_NOISE_PROBABILITY = 0.8
# What English speech reads from espeak-ng-data besides the voice files (lang/gmw/en*, voices/!v/*).
_ENGLISH_DATA = ("phondata", "phonindex", "phontab", "intonations", "en_dict")
# The library's state is global: two threads speaking at once would share one copy of it.
_ESPEAK_LOCK = threading.Lock()
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


def speaker_id(voice, variant):
    """The 8-hex-digit name of the speaker ``voice+variant``, as in Speech Commands' file names.

    Args:
        voice: the espeak-ng voice, one of :data:`VOICES`.
        variant: the voice variant, one of :data:`VARIANTS`.
    """
    return hashlib.sha1(f"{voice}+{variant}".encode()).hexdigest()[:8]


def which_set(filename, validation_percentage=10.0, testing_percentage=10.0):
    """``"validation"``, ``"testing"`` or ``"training"`` for a clip, by its speaker (the Speech Commands rule).

    Args:
        filename: the clip's file name or path, ``<speaker>_nohash_<n>.wav``.
        validation_percentage: the share of speakers for validation, in percent.
        testing_percentage: the share of speakers for testing, in percent.
    """
    hash_name = re.sub(r"_nohash_.*$", "", os.path.basename(filename))
    hash_name_hashed = hashlib.sha1(hash_name.encode()).hexdigest()
    percentage_hash = (int(hash_name_hashed, 16) % (MAX_NUM_WAVS_PER_CLASS + 1)) * (100.0 / MAX_NUM_WAVS_PER_CLASS)
    if percentage_hash < validation_percentage:
        return "validation"
    if percentage_hash < testing_percentage + validation_percentage:
        return "testing"
    return "training"


def english_data(folder):
    """Copy the part of espeak-ng-data that :data:`SPEAKERS` use into ``folder``; returns ``folder``.

    Speech made from it is the same, sample for sample, and quicker to make. espeak_SetVoiceByName
    lowercases the name it gets, so it misses files such as ``lang/gmw/en-US`` and then reads every
    voice file in the data folder to find the voice: 245 files in the wheel's folder (4 ms for each
    utterance, as the library is reloaded for each), 39 in this one (under 1 ms).

    Args:
        folder: where to copy to; made if missing.
    """
    source = espeakng_loader.get_data_path()
    os.makedirs(os.path.join(folder, "voices", "!v"), exist_ok=True)
    for name in _ENGLISH_DATA:
        shutil.copy(os.path.join(source, name), folder)
    for variant in VARIANTS:
        shutil.copy(os.path.join(source, "voices", "!v", variant), os.path.join(folder, "voices", "!v"))
    shutil.copytree(os.path.join(source, "lang", "gmw"), os.path.join(folder, "lang", "gmw"), dirs_exist_ok=True,
                    ignore=lambda _, names: [name for name in names if not name.startswith("en")])
    return folder


def _load_espeak(data):
    """A freshly loaded libespeak-ng, initialized for synchronous output; returns (library, sample rate)."""
    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    lib.espeak_Synth.argtypes = [
        ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
        ctypes.c_void_p, ctypes.c_void_p,
    ]
    # buflength 0: espeak's default of 60 ms per callback.
    sample_rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, os.fsencode(data), _INITIALIZE_DONT_EXIT)
    if sample_rate <= 0:
        _unload_espeak(lib)
        raise RuntimeError(f"espeak_Initialize failed (returned {sample_rate}) with the data in {data}")
    return lib, sample_rate


def _unload_espeak(lib):
    """Terminate and unload the library, so that the next utterance starts from its initial state."""
    lib.espeak_Terminate()
    _ctypes.dlclose(lib._handle)
    try:
        # RTLD_NOLOAD opens the library only if it is still loaded, i.e. held by someone else too.
        still_loaded = ctypes.CDLL(lib._name, mode=os.RTLD_NOLOAD)
    except OSError:
        return
    _ctypes.dlclose(still_loaded._handle)
    raise RuntimeError(f"{lib._name} stays loaded after dlclose (something else in this process holds it), "
                       "so espeak-ng's state would carry from one utterance to the next and the speech "
                       "would not be reproducible")


def synthesize(text, voice, variant, rate, pitch, seed=0, data=None):
    """espeak-ng speaking ``text``: int16 samples and their sample rate (22,050 Hz).

    The same arguments give the same samples, whatever was spoken before (see the module docstring).

    Args:
        text: what to say, ASCII.
        voice: an espeak-ng voice name, one of :data:`VOICES` or any other it knows.
        variant: a voice variant, a file name in ``espeak-ng-data/voices/!v``.
        rate: speaking rate in words per minute, 80 to 450 (espeak's default is 175).
        pitch: base pitch, 0 to 100 (espeak's default is 50).
        seed: seeds espeak's random generator (breath and whisper noise, the Klatt voices).
        data: the espeak-ng-data folder, such as one made by :func:`english_data`; ``None``: the
            one in espeakng-loader.
    """
    data = espeakng_loader.get_data_path() if data is None else data
    if not isinstance(text, str) or not text.isascii() or not text.strip():
        raise ValueError(f"text must be a non-blank ASCII str, got {text!r}")
    # espeak_SetVoiceByName quietly ignores an unknown variant, so look for its file first.
    if not isinstance(variant, str) or not os.path.isfile(os.path.join(data, "voices", "!v", variant)):
        raise ValueError(f"variant must be a file in espeak-ng-data/voices/!v, got {variant!r}")
    if not 80 <= rate <= 450 or not 0 <= pitch <= 100:
        raise ValueError(f"rate must be 80..450 and pitch 0..100, got {rate} and {pitch}")
    chunks = []

    def collect(samples, count, events):
        if samples and count > 0:
            chunks.append(np.ctypeslib.as_array(samples, shape=(count,)).copy())
        return 0  # 0: go on

    callback = _CALLBACK(collect)
    message = text.encode("ascii") + b"\0"
    with _ESPEAK_LOCK:
        lib, sample_rate = _load_espeak(data)
        try:
            lib.espeak_SetSynthCallback(callback)
            status = lib.espeak_SetVoiceByName(f"{voice}+{variant}".encode())
            if status != 0:
                raise ValueError(f"voice must be an espeak-ng voice name such as 'en-us', got {voice!r} "
                                 f"(espeak_SetVoiceByName returned {status})")
            for parameter, value in ((_ESPEAK_RATE, rate), (_ESPEAK_PITCH, pitch), (_ESPEAK_VOLUME, _VOLUME)):
                lib.espeak_SetParameter(parameter, int(value), 0)
            lib.espeak_ng_SetRandSeed(seed)
            status = lib.espeak_Synth(message, len(message), 0, _POS_CHARACTER, 0, 0, None, None)
            if status != 0:
                raise RuntimeError(f"espeak_Synth failed with status {status} for {text!r}")
            lib.espeak_Synchronize()
        finally:
            _unload_espeak(lib)
    return (np.concatenate(chunks) if chunks else np.zeros(0, np.int16)), sample_rate


@functools.lru_cache(maxsize=None)
def _resampling_filter(up, down):
    """resample_poly's own default filter; designed once here, as it costs more than the resampling itself."""
    max_rate = max(up, down)
    return firwin(2 * 10 * max_rate + 1, 1 / max_rate, window=("kaiser", 5.0))


def utterance(text, voice, variant, rate, pitch, seed=0, data=None):
    """:func:`synthesize`'s speech trimmed of its leading and trailing silence and resampled to 16 kHz.

    Returns float samples on espeak's int16 scale.

    Args:
        text, voice, variant, rate, pitch, seed, data: as for :func:`synthesize`.
    """
    samples, sample_rate = synthesize(text, voice, variant, rate, pitch, seed, data)
    samples = samples.astype(np.float64)
    loud = np.flatnonzero(np.abs(samples) > 0.02 * np.abs(samples).max())
    samples = samples[loud[0] : loud[-1] + 1]
    divisor = np.gcd(SAMPLE_RATE, sample_rate)
    up, down = SAMPLE_RATE // divisor, sample_rate // divisor
    return resample_poly(samples, up, down, window=_resampling_filter(up, down))


def spoken_clip(word, voice, variant, rng, noises, data=None):
    """One 1 s clip of ``word``, as float samples in [-1, 1]; returns (clip, start, stop) of the utterance.

    Args:
        word: the word to say.
        voice: an espeak-ng voice, one of :data:`VOICES`.
        variant: a voice variant, one of :data:`VARIANTS`.
        rng: a numpy ``Generator`` for the rate, pitch, level, offset and noise.
        noises: background noises to mix in (float arrays at 16 kHz, each at least 1 s), or ``[]``.
        data: the espeak-ng-data folder (see :func:`synthesize`).
    """
    # The speaker's own base rate and pitch, the same in every clip and for every seed.
    style = np.random.default_rng(int(speaker_id(voice, variant), 16))
    rate = style.uniform(150, 220) + rng.uniform(-15, 15)
    pitch = style.uniform(30, 70) + rng.uniform(-10, 10)
    speech = utterance(word, voice, variant, rate, pitch, int(rng.integers(2**31)), data)[:SAMPLE_RATE]
    speech *= 10 ** (rng.uniform(-16, -1) / 20) / np.abs(speech).max()
    start = int(rng.integers(0, SAMPLE_RATE - len(speech) + 1))
    stop = start + len(speech)
    clip = np.zeros(SAMPLE_RATE)
    clip[start:stop] = speech
    if noises and rng.random() < _NOISE_PROBABILITY:
        noise = noises[int(rng.integers(len(noises)))]
        offset = int(rng.integers(0, len(noise) - SAMPLE_RATE + 1))
        noise = noise[offset : offset + SAMPLE_RATE]
        speech_rms = np.sqrt(np.mean(speech**2))
        clip += noise * (speech_rms * 10 ** (-rng.uniform(12, 35) / 20) / np.sqrt(np.mean(noise**2)))
    return np.clip(clip, -1.0, 1.0), start, stop


def _colored_noise(rng, length, exponent):
    """Gaussian noise with power falling as 1/f**exponent above 20 Hz (0: white, 1: pink, 2: brown)."""
    spectrum = np.fft.rfft(rng.standard_normal(length))
    frequencies = np.fft.rfftfreq(length, 1 / SAMPLE_RATE)
    # Flat below 20 Hz: a 1/f**2 spectrum down to DC would drift off by whole seconds.
    spectrum *= np.maximum(frequencies, 20.0) ** (-exponent / 2)
    spectrum[0] = 0
    return np.fft.irfft(spectrum, length)


def _mains_hum(rng, length):
    """50 or 60 Hz mains hum: odd and even harmonics with random phases, a slow wobble and a little hiss."""
    t = np.arange(length) / SAMPLE_RATE
    mains = rng.choice([50.0, 60.0])
    hum = sum(np.sin(2 * np.pi * mains * k * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 9))
    wobble = 1 + 0.2 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t)
    return hum * wobble + 0.05 * rng.standard_normal(length)


def background_noises(seed):
    """The background noise recordings: {name: float samples at 16 kHz, 30 s, RMS 0.1 (-20 dBFS)}.

    Args:
        seed: the random seed, a non-negative int.
    """
    # Keyed apart from the words' generators, which are keyed by the CRC-32 of the word.
    rng = np.random.default_rng([seed, zlib.crc32(b"_background_noise_")])
    length = _NOISE_SECONDS * SAMPLE_RATE
    noises = {
        "white_noise": _colored_noise(rng, length, 0),
        "pink_noise": _colored_noise(rng, length, 1),
        "brown_noise": _colored_noise(rng, length, 2),
        "mains_hum": _mains_hum(rng, length),
    }
    return {name: 0.1 * noise / np.sqrt(np.mean(noise**2)) for name, noise in noises.items()}


def write_wav(path, samples):
    """Write float samples as a 16-bit PCM mono WAV at 16 kHz.

    Args:
        path: the file to write.
        samples: 1-D floats; [-1, 1] maps to the full 16-bit range, anything beyond is clipped.
    """
    pcm = np.round(np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(path, "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(SAMPLE_RATE)
        f.writeframes(pcm.tobytes())


def _check_arguments(out, per_word, seed, words):
    if not isinstance(out, (str, os.PathLike)):
        raise TypeError(f"out must be a path (str or os.PathLike), got {type(out).__name__}")
    # Clips left from an earlier run would count as training data without being in the lists.
    if os.path.isdir(out) and os.listdir(out):
        raise ValueError(f"out must be a missing or empty folder, got {os.fspath(out)!r}, which holds files")
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"out must be a missing or empty folder, got {os.fspath(out)!r}, which is a file")
    for name, value, least in (("per_word", per_word, 1), ("seed", seed, 0)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
        if value < least:
            raise ValueError(f"{name} must be >= {least}, got {value}")
    if not isinstance(words, (list, tuple)) or not all(isinstance(word, str) for word in words):
        raise TypeError(f"words must be a list or tuple of str, got {words!r}")
    if not words:
        raise ValueError("words must hold at least one word, got none")
    for word in words:
        if not re.fullmatch(r"[a-z]+", word):
            raise ValueError(f"words must be lowercase ASCII letters only (they name folders), got {word!r}")
    if len(set(words)) != len(words):
        raise ValueError(f"words must be unique, got {list(words)}")


def _write_word(folder, word, per_word, seed, noises, data):
    """Write ``per_word`` clips of ``word`` into ``folder``; returns their file names."""
    os.makedirs(folder)
    # Keyed by the word itself, so that adding or dropping words leaves the others' clips alone.
    rng = np.random.default_rng([seed, zlib.crc32(word.encode())])
    takes, names = {}, []
    for index in rng.integers(len(SPEAKERS), size=per_word):
        voice, variant = SPEAKERS[index]
        speaker = speaker_id(voice, variant)
        takes[speaker] = takes.get(speaker, -1) + 1
        names.append(f"{speaker}_nohash_{takes[speaker]}.wav")
        clip, _, _ = spoken_clip(word, voice, variant, rng, noises, data)
        write_wav(os.path.join(folder, names[-1]), clip)
    return names


def write_spoken_words(out, per_word=30, seed=0, words=WORDS):
    """Write a Speech Commands-like dataset of espeak-ng speech to ``out`` (see the module docstring).

    Args:
        out: the folder to write; it must be missing or empty.
        per_word: clips per word. Speakers are drawn from :data:`SPEAKERS` with replacement, so some
            say a word more than once (``_nohash_1``, ...).
        seed: the random seed, a non-negative int: the same seed writes the same bytes.
        words: the words to say, lowercase ASCII letters; a word's clips do not depend on the others.

    Returns:
        ``{"training": [...], "validation": [...], "testing": [...]}``: the clips' paths relative to
        ``out`` (``word/file.wav``), sorted.
    """
    _check_arguments(out, per_word, seed, words)
    os.makedirs(os.path.join(out, "_background_noise_"), exist_ok=True)
    noises = []
    for name, noise in background_noises(seed).items():
        write_wav(os.path.join(out, "_background_noise_", f"{name}.wav"), noise)
        noises.append(noise)
    splits = {"training": [], "validation": [], "testing": []}
    with tempfile.TemporaryDirectory() as data:
        english_data(data)
        for word in words:
            for name in _write_word(os.path.join(out, word), word, per_word, seed, noises, data):
                splits[which_set(name)].append(f"{word}/{name}")
    for split, filename in (("validation", "validation_list.txt"), ("testing", "testing_list.txt")):
        with open(os.path.join(out, filename), "w") as f:
            f.writelines(f"{path}\n" for path in sorted(splits[split]))
    return {split: sorted(paths) for split, paths in splits.items()}
