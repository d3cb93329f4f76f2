"""The speech features in plain NumPy: the ground truth for ``pipelines.speech`` in the tests.

Each step as GCommandsPytorch's ``spect_loader`` takes it (see ``pipelines.speech``), and the
resampling as DALI's audio decoder does it, so that the two agree to float rounding.
"""

import numpy as np

SAMPLE_RATE, WINDOW, HOP, FRAMES = 16000, 320, 160, 101


def resample(samples, rate, out_rate=SAMPLE_RATE, quality=50.0):
    """``samples`` (mono) from ``rate`` to ``out_rate`` as ``fn.decoders.audio`` resamples them.

    DALI's resampler (``dali/kernels/signal/resampling_cpu.cc``) sums the input under a
    Hann-windowed sinc at the *input* rate, read from a 64-per-lobe lookup table with linear
    interpolation; the output positions advance in float32 in blocks of 256. It does not low-pass
    below the output's Nyquist frequency first, so when it downsamples, content between the new
    and the old Nyquist frequency folds back (librosa and torchaudio filter it out).

    Args:
        samples: 1-D floats.
        rate: their sample rate in Hz.
        out_rate: the rate wanted.
        quality: DALI's ``quality`` (50 is its default: 16 lobes).
    """
    lobes = int(round(0.007 * quality * quality - 0.09 * quality + 3))
    coeffs = lobes * 64 + 1
    step = np.float32(2.0 * lobes / (coeffs - 1))
    center = (coeffs - 1) // 2
    k = np.arange(coeffs) - center
    lookup = np.zeros(coeffs + 2, np.float32)
    lookup[1:-1] = np.sinc(k * step) * 0.5 * (1 + np.cos(np.pi * k * np.float32(2.0 / coeffs)))
    samples = np.asarray(samples, np.float32)
    n_out = int(np.ceil(len(samples) * out_rate / rate))
    scale = rate / out_rate
    out = np.zeros(n_out)
    taps = np.arange(2 * lobes + 1)
    for begin in range(0, n_out, 256):
        start = begin * scale
        base = int(np.floor(start))
        count = min(256, n_out - begin)
        steps = np.full(count, np.float32(scale), np.float32)
        steps[0] = np.float32(start - base)
        positions = np.cumsum(steps, dtype=np.float32)  # sequential float32 sums, as DALI's loop adds
        index = np.ceil(positions).astype(np.int64)[:, None] - lobes + taps  # relative to base
        valid = (index <= np.floor(positions)[:, None] + lobes) & (index + base >= 0) & (index + base < len(samples))
        fraction = (index - positions[:, None]).astype(np.float32) * np.float32(1 / step) + np.float32(center + 1)
        cell = np.clip(np.floor(fraction).astype(np.int64), 0, coeffs)
        weight = lookup[cell] + (fraction - cell) * (lookup[cell + 1] - lookup[cell])
        values = samples[np.clip(index + base, 0, len(samples) - 1)]
        out[begin : begin + count] = np.sum(np.where(valid, values * weight, 0.0), axis=1)
    return out


def periodic_hamming(length=WINDOW):
    return 0.54 - 0.46 * np.cos(2 * np.pi * np.arange(length) / length)


def log_spectrogram(samples, rate):
    """The standardized log-magnitude spectrogram ``[1, 161, 101]`` of a clip, in float64.

    Args:
        samples: ``[N]`` or ``[N, channels]`` floats in [-1, 1] (channels are averaged).
        rate: their sample rate in Hz (resampled to 16 kHz as DALI does, see :func:`resample`).
    """
    samples = np.asarray(samples, np.float64)
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    if rate != SAMPLE_RATE:
        samples = resample(samples, rate)
    padded = np.pad(samples, WINDOW // 2, mode="reflect")
    count = len(samples) // HOP + 1
    frames = np.stack([padded[i * HOP : i * HOP + WINDOW] for i in range(count)])
    spectrogram = np.log1p(np.abs(np.fft.rfft(frames * periodic_hamming(), axis=1))).T
    fixed = np.zeros((WINDOW // 2 + 1, FRAMES))
    kept = min(FRAMES, count)
    fixed[:, :kept] = spectrogram[:, :kept]
    std = fixed.std(ddof=1)
    if std > 0:
        fixed = (fixed - fixed.mean()) / std
    return fixed[None]
