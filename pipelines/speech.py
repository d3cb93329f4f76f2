"""Train and eval pipelines for speech: decode, log-magnitude spectrogram, then mixup (train).

The features are those of the public Google-commands loader the paper's speech experiment
matches (GCommandsPytorch's ``spect_loader``): 16 kHz mono; an STFT with a 20 ms periodic Hamming
window (n_fft 320) every 10 ms, frames centred with reflect padding; the magnitude; ``log1p``;
the time axis zero-padded or cut to 101 frames; each spectrogram standardized over all its values
(mean, unbiased std), left as it is when its std is 0. The output is ``[B, 1, 161, 101]``: the
paper says 160 rows, the reference code (and n_fft / 2 + 1) gives 161.

As in ``pipelines.images``, the processing is a plain function of DataNodes and thin
``@pipeline_def`` wrappers add the reader (a ``pipelines.sources.Feed``), for ``device="cpu"`` and ``"gpu"``.
"""

import dataclasses

import numpy as np
import nvidia.dali.math as dmath
from nvidia.dali import fn, pipeline_def, types

from dali_mixup.build import fused_backends
from dali_mixup.mixup import mixing_draws, mixup

SAMPLE_RATE = 16000
WINDOW = 320  # 20 ms at 16 kHz, also n_fft: 161 frequency rows
HOP = 160  # 10 ms
FRAMES = 101  # 1 s: 16000 // 160 + 1 centred frames
# scipy.signal.get_window("hamming", 320), periodic as librosa takes it. DALI's own windows are
# Hann only, with a half-sample offset, so the window is given explicitly.
HAMMING = (0.54 - 0.46 * np.cos(2 * np.pi * np.arange(WINDOW) / WINDOW)).astype(np.float32).tolist()


def _decode(encoded):
    return fn.decoders.audio(encoded, dtype=types.FLOAT, downmix=True, sample_rate=SAMPLE_RATE)[0]


def log_spectrogram(encoded, device):
    """Encoded clips (WAV, FLAC, Ogg) to standardized log-magnitude spectrograms ``[1, 161, 101]``, float32, "CHW".

    On the CPU the plugin's LogSpectrogram does every step after the decoder in one pass, where it is
    built: DALI's CPU spectrogram takes a slow path for an FFT size that is not a power of two (0.51 ms
    a clip at 320 on a core, 0.08 ms at 256). On the GPU, DALI's operators (cuFFT)."""
    audio = _decode(encoded)
    if device == "cpu" and "cpu" in fused_backends():
        return fn.log_spectrogram(audio, window=HAMMING, hop=HOP, frames=FRAMES)
    if device == "gpu":
        audio = audio.gpu()  # DALI decodes audio on the CPU only; the STFT and the rest run on the GPU
    spectrogram = fn.spectrogram(audio, nfft=WINDOW, window_length=WINDOW, window_step=HOP, window_fn=HAMMING,
                                 power=1, center_windows=True, reflect_padding=True, layout="ft")
    spectrogram = dmath.log(spectrogram + 1.0)  # log1p; DALI's math has no log1p
    spectrogram = fn.slice(spectrogram, start=[0], shape=[FRAMES], axes=[1], out_of_bounds_policy="pad")
    spectrogram = standardize(spectrogram)
    spectrogram = fn.expand_dims(spectrogram, axes=[0], new_axis_names="C")
    # A one-channel image to the models, and to CutMix, whose box is then frequency (H) by time (W).
    return fn.reshape(spectrogram, layout="CHW")


def standardize(spectrogram):
    """``(x - mean) / std`` over each sample's values (unbiased std), the sample unchanged where the std is 0."""
    mean = fn.reductions.mean(spectrogram)
    std = fn.reductions.std_dev(spectrogram, mean, ddof=1)
    # 1 where the std is > 0 and 0 where not: no division by 0, and silence stays 0 (not NaN).
    spread = fn.cast(std > 0, dtype=types.FLOAT)
    return (spectrogram - mean * spread) / (std * spread + (1.0 - spread))


def _as(features, dtype):
    return features if dtype == types.FLOAT else fn.cast(features, dtype=dtype)


@pipeline_def
def train_pipeline(feed, mixing, *, device, image_dtype, soft_targets):
    """Train batches: ``(spectrograms, targets)``, targets soft ``[B, num_classes]`` or, with ``soft_targets`` off, class ids.

    Args:
        feed: a ``pipelines.sources.Feed`` over ``pipelines.sources.SpeechCommands``.
        mixing: :class:`dali_mixup.mixup.Mixing`: the spectrograms are mixed as they come, the
            paper's "mixup at the spectrogram level"; CutMix cuts a time-frequency box.
        device: ``"gpu"`` or ``"cpu"``.
        image_dtype: ``types.FLOAT``, or ``types.FLOAT16`` on the GPU.
        soft_targets: see ``pipelines.images.train_pipeline``.
    """
    source = feed.source
    encoded, labels = source.read(feed, device=device)
    if device == "cpu" and mixing.mixes and "cpu" in fused_backends():
        # The features and their mixing in the plugin's LogSpectrogram: the blend with the partner is its
        # standardizing pass, so mixing costs the read of the partner's values.
        lam, perm, box = mixing_draws(mixing, (WINDOW // 2 + 1, FRAMES))
        spectrograms, targets = fn.log_spectrogram(
            _decode(encoded), fn.cast(labels, dtype=types.INT32), lam=lam, partner=perm,
            **({} if box is None else {"box": box}), window=HAMMING, hop=HOP, frames=FRAMES,
            num_classes=source.num_classes, label_smoothing=float(mixing.label_smoothing))
        return _as(spectrograms, image_dtype), targets if soft_targets else labels
    spectrograms = log_spectrogram(encoded, device)
    cutmix = {"output_layout": "CHW"} if mixing.cutmix else {}
    spectrograms, targets = mixup(spectrograms, labels, num_classes=source.num_classes,
                                  **dataclasses.asdict(mixing), **cutmix)
    return _as(spectrograms, image_dtype), targets if soft_targets else _on(labels, device)


def _on(labels, device):
    # so that the iterator hands both outputs over on the same device
    return labels.gpu() if device == "gpu" else labels


@pipeline_def
def val_pipeline(feed, *, device, image_dtype):
    """Eval batches: ``(spectrograms, labels)``, every clip once across ranks; arguments as :func:`train_pipeline`."""
    encoded, labels = feed.source.read(feed, device=device)
    return _as(log_spectrogram(encoded, device), image_dtype), _on(labels, device)
