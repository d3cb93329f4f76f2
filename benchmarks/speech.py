"""Speech loader throughput, side by side in one run: a PyTorch DataLoader and DALI, each with and without mixup.

    python -m benchmarks.speech [--device cpu|gpu] [--runs 7] [--batch-size 100] [--threads N] [--workers N]
                                [--data DIR] [--per-word N] [--batches N] [--configs ...] [--json PATH] [--png PATH]

Every configuration reads the train split of one Speech Commands-like folder (``--data``, made with
the spoken-words maker, ``--per-word`` clips of each of the 35 words, when it is missing) and turns
each clip into the same ``[1, 161, 101]`` standardized log spectrogram (see ``pipelines.speech``):

- ``torch_dataloader``: a ``Dataset`` that decodes with the standard library's ``wave`` and takes
  ``torch.stft``, in ``--workers`` DataLoader workers; one-hot targets;
- ``torch_dataloader_mixup``: the same, then mixup on the batch in the main process (λ ~ Beta(0.2,
  0.2) per batch, a random permutation), as users do today;
- ``dali``, ``dali_mixup``: ``make_loader(dataset="speechcommands")`` with ``--threads`` DALI
  threads, without mixup and with mixup in the graph (α = 0.2).

Each run measures every configuration once, in turn (as ``benchmarks.loader`` does): one epoch,
timed after an untimed one, or with ``--batches N`` N batches after an untimed one (for smoke runs: the
DataLoader's workers read 2 batches each ahead, which few timed batches favour). The result is
the median clips/s over the runs, after a warm-up; the ratios are taken inside each run, then the
median. The JSON and a PNG chart go to ``benchmarks/results/DATE-speech-DEVICE-HARDWARE.*``.
"""

import argparse
import itertools
import json
import os
import shlex
import sys
import tempfile
import time
import wave

import numpy as np
import torch

from benchmarks.common import environment, hardware_tag, interleaved_runs, median, require_at_least
from benchmarks.common import ratios as common_ratios
from benchmarks.loader import bar_chart, torch_mixup
from benchmarks.loader import measure as measure_epoch
from dali_mixup import formats, make_loader
from dali_mixup.reference import one_hot_targets

CONFIGS = ("torch_dataloader", "torch_dataloader_mixup", "dali", "dali_mixup")
RATIOS = {
    "dali / torch_dataloader": ("dali", "torch_dataloader"),
    "dali_mixup / dali": ("dali_mixup", "dali"),
    "dali_mixup / torch_dataloader_mixup": ("dali_mixup", "torch_dataloader_mixup"),
    "torch_dataloader_mixup / torch_dataloader": ("torch_dataloader_mixup", "torch_dataloader"),
}
TARGETS = {"dali_mixup / dali": 0.97}  # the target on the CPU (median of >= 5 runs)
ALPHA = 0.2
SAMPLE_RATE, WINDOW, HOP, FRAMES = 16000, 320, 160, 101  # as pipelines.speech


def read_wav(path):
    """A 16-bit PCM WAV as float32 ``[N]`` in [-1, 1) (int16 / 32768, channels averaged), at 16 kHz only."""
    with wave.open(os.fspath(path)) as f:
        rate, width, channels = f.getframerate(), f.getsampwidth(), f.getnchannels()
        if rate != SAMPLE_RATE:
            raise ValueError(f"{path}: {rate} Hz; the torch_dataloader baseline reads {SAMPLE_RATE} Hz clips only "
                             "(DALI resamples, this baseline does not)")
        if width != 2:
            raise ValueError(f"{path}: {8 * width}-bit samples; the torch_dataloader baseline reads 16-bit PCM only")
        pcm = np.frombuffer(f.readframes(f.getnframes()), "<i2")
    samples = torch.from_numpy(pcm.astype(np.float32) / 32768.0)
    return samples.view(-1, channels).mean(dim=1) if channels > 1 else samples


def log_spectrogram(samples):
    """``pipelines.speech.log_spectrogram`` in torch: ``[N]`` floats at 16 kHz to ``[1, 161, 101]`` float32."""
    window = torch.hamming_window(WINDOW, periodic=True)
    spectrum = torch.stft(samples, n_fft=WINDOW, hop_length=HOP, win_length=WINDOW, window=window, center=True,
                          pad_mode="reflect", return_complex=True).abs()
    spectrogram = torch.log1p(spectrum)[:, :FRAMES]
    spectrogram = torch.nn.functional.pad(spectrogram, (0, FRAMES - spectrogram.shape[1]))  # zero frames after
    std = spectrogram.std()  # unbiased, as pipelines.speech; a silent clip is left as it is
    if std > 0:
        spectrogram = (spectrogram - spectrogram.mean()) / std
    return spectrogram[None]


class SpokenClips(torch.utils.data.Dataset):
    """The clips of a Speech Commands split as ``(spectrogram [1, 161, 101], label)``, decoded in the worker."""

    def __init__(self, root, split="train"):
        self.files, self.labels, self.classes = formats.speech_commands(os.fspath(root), split)

    def __len__(self):
        return len(self.files)

    def __getitem__(self, index):
        return log_spectrogram(read_wav(self.files[index])), self.labels[index]


def build(config, root, args):
    """An iterator factory for one configuration: each call yields ``(spectrograms, targets)`` for one epoch."""
    if config.startswith("dali"):
        loader = make_loader(dataset="speechcommands", root=root, split="train", batch_size=args.batch_size,
                             device=args.device, num_threads=args.threads, world_size=1, rank=0,
                             mixup_alpha=ALPHA if config == "dali_mixup" else 0.0)
        return loader.__iter__, len(loader)
    dataset = SpokenClips(root)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=args.batch_size, shuffle=True, drop_last=True, num_workers=args.workers,
        pin_memory=args.device == "gpu", persistent_workers=args.workers > 0,
    )
    device = torch.device("cuda" if args.device == "gpu" else "cpu")
    num_classes = len(dataset.classes)
    mix = torch_mixup(num_classes) if config == "torch_dataloader_mixup" else None

    def epoch():
        for spectrograms, labels in loader:
            spectrograms, labels = spectrograms.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            yield mix(spectrograms, labels) if mix else (spectrograms, one_hot_targets(labels, num_classes))

    return epoch, len(loader)


def measure(epoch, device, batches=0):
    """Clips/s: over one epoch timed after an untimed one (``benchmarks.loader.measure``, whose docstring
    says why), or over ``batches`` batches timed after an untimed first batch of the epoch, which absorbs the
    rebuild of DALI's broken-off epoch and the DataLoader's restart."""
    if not batches:
        return measure_epoch(epoch, device)
    sync = torch.cuda.synchronize if device == "gpu" else lambda: None
    clips = epoch()
    next(clips)
    sync()
    count, start = 0, time.perf_counter()
    for spectrograms, _ in itertools.islice(clips, batches):
        count += len(spectrograms)
    sync()
    clips.close()  # the epoch is broken off: the next one starts afresh
    return count / (time.perf_counter() - start)


def make_data(path, per_word):
    """The spoken-words set in ``path``, made (in a sibling folder, then renamed) when it is not there."""
    if os.path.isfile(os.path.join(path, "validation_list.txt")):
        return
    from dali_mixup.spoken_words import write_spoken_words

    print(f"making {35 * per_word} spoken-word clips in {path}", file=sys.stderr)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    scratch = tempfile.mkdtemp(dir=parent, prefix=".spoken-words-")
    write_spoken_words(os.path.join(scratch, "set"), per_word=per_word)
    os.rename(os.path.join(scratch, "set"), path)
    os.rmdir(scratch)


def markdown(results, ratios, runs):
    """The tables of docs/benchmarks.md: clips/s per configuration, and the ratios against their targets."""
    lines = ["| configuration | clips/s |", "| --- | ---: |"]
    lines += [f"| `{config}` | {value:.0f} |" for config, value in results.items()]
    lines += ["", f"| ratio (median of the {runs} per-run ratios) | measured | target |", "| --- | ---: | ---: |"]
    lines += [f"| `{name}` | {value:.2f} | {f'≥ {TARGETS[name]}' if name in TARGETS else ''} |"
              for name, value in ratios.items()]
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "gpu"], default="gpu" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--runs", type=int, default=7, help="measured runs; the result is the median")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="DALI CPU threads")
    parser.add_argument("--workers", type=int, help="DataLoader workers (default: --threads)")
    parser.add_argument("--data", help="a Speech Commands-like root, made there when missing "
                                       "(default: runs/bench-data/spoken-words-35xN)")
    parser.add_argument("--per-word", type=int, default=30, help="clips per word when the data is made")
    parser.add_argument("--batches", type=int, default=0, help="time this many batches after an untimed one "
                                                                "(default 0: a whole epoch after an untimed one)")
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, default=list(CONFIGS))
    parser.add_argument("--json", help="the results (default: benchmarks/results/DATE-speech-DEVICE-HW.json)")
    parser.add_argument("--png", help="the chart (default: beside the JSON)")
    args = parser.parse_args(argv)
    args.workers = args.threads if args.workers is None else args.workers
    require_at_least(parser, args, ("runs", "batch_size", "threads", "per_word"))
    require_at_least(parser, args, ("workers", "batches"), minimum=0)
    if args.device == "gpu" and not torch.cuda.is_available():
        parser.error("--device gpu, but torch sees no CUDA GPU")
    args.data = args.data or os.path.join("runs", "bench-data", f"spoken-words-35x{args.per_word}")
    make_data(args.data, args.per_word)

    epochs, batches_per_epoch = {}, {}
    for config in args.configs:
        epochs[config], batches_per_epoch[config] = build(config, args.data, args)
    if len(set(batches_per_epoch.values())) != 1:  # DALI drops the last partial batch, as drop_last does
        raise SystemExit(f"the configurations disagree on the batches per epoch: {batches_per_epoch}")
    per_epoch = next(iter(batches_per_epoch.values()))
    if args.batches >= per_epoch:
        parser.error(f"--batches must be below the {per_epoch} batches of an epoch (one is the untimed warm-up)")
    for epoch in epochs.values():  # warm-up: workers started, pipelines built, caches filled
        measure(epoch, args.device, args.batches)
    runs = interleaved_runs(lambda config: measure(epochs[config], args.device, args.batches), args.configs,
                            args.runs)
    results = {config: median(values) for config, values in runs.items()}
    ratios = common_ratios(runs, RATIOS)
    env = environment()
    report = {
        "env": env,
        "command": shlex.join(["python", "-m", "benchmarks.speech", *argv]),
        "settings": {"device": args.device, "batch_size": args.batch_size, "threads": args.threads,
                     "workers": args.workers, "runs": args.runs, "data": args.data,
                     "clips": len(SpokenClips(args.data)), "batches_per_epoch": per_epoch,
                     "timed_batches": args.batches or per_epoch, "mixup_alpha": ALPHA},
        "results": results,
        "runs": runs,
        "ratios": ratios,
        "targets": {name: target for name, target in TARGETS.items() if name in ratios},
    }
    print(f"\nclips/s, median of {args.runs} runs, {args.device}, batch {args.batch_size}, "
          f"{args.threads} DALI threads, {args.workers} DataLoader workers\n")
    print(markdown(results, ratios, args.runs))

    path = args.json or os.path.join(
        "benchmarks", "results", f"{env['date']}-speech-{args.device}-{hardware_tag(env)}.json"
    )
    chart = args.png or os.path.splitext(path)[0] + ".png"
    for out in (path, chart):
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
    bar_chart(results, chart, f"clips/s, {args.device}, batch {args.batch_size}, median of {args.runs} "
                              f"({env['gpu'] or env['cpu']}, {env['cores']} cores)")
    print(f"wrote {path} and {chart}", file=sys.stderr)


if __name__ == "__main__":
    main()
