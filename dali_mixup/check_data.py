"""Check a dataset before training: decode every image or clip with DALI on the CPU, and check every label.

    python -m dali_mixup.check_data ROOT [--file-list LIST] [--num-classes N] [--threads N]

ROOT is an ImageFolder (or a folder holding train/ and val/ ImageFolders), the root of a file
list, a folder of webdataset tar shards, a folder holding CIFAR batches, or a Speech Commands
root. The command lists every file it cannot decode, every empty class folder, every bad label,
every shard label file that disagrees with its shard, and for speech every clip that is empty or
truncated (which a decoder reads as a shorter clip) and every bad line of the split lists; it
exits with status 1 if it found any. On a terminal it shows its progress on stderr.
"""

import argparse
import concurrent.futures
import glob
import os
import sys
import time

import numpy as np
from nvidia.dali import fn, pipeline_def, types

from dali_mixup import cifar, formats


@pipeline_def(device_id=None, prefetch_queue_depth=1, exec_async=False, exec_pipelined=False)
def _decode_pipeline(audio):
    encoded = fn.external_source(name="encoded", dtype=types.UINT8)
    if audio:  # as pipelines.speech decodes clips
        return fn.decoders.audio(encoded, dtype=types.FLOAT, downmix=True, sample_rate=16000)[0]
    return fn.decoders.image(encoded, device="cpu", output_type=types.RGB)


class _Decoder:
    """Decodes batches of encoded images (or audio clips) with DALI on ``threads`` CPU threads.

    A DALI pipeline stays broken after an error, so a failed batch gets a new pipeline, and
    each of its files is decoded alone to find the ones at fault.
    """

    def __init__(self, batch_size, threads, audio):
        self.batch_size, self.threads, self.audio = batch_size, threads, audio
        self._pipe = None

    def _run(self, blobs):
        if self._pipe is None:
            self._pipe = _decode_pipeline(self.audio, batch_size=self.batch_size, num_threads=self.threads)
            self._pipe.build()
        try:
            self._pipe.feed_input("encoded", [np.frombuffer(blob, dtype=np.uint8) for blob in blobs])
            self._pipe.run()
        except Exception:  # a DALI pipeline error is not one type
            self._pipe = None
            raise

    def bad(self, batch):
        """The ``(name, reason)`` of every file in ``batch`` (``[(name, bytes)]``) that does not decode."""
        try:
            self._run([blob for _, blob in batch])
            return []
        except Exception:
            pass
        bad = []
        for name, blob in batch:
            try:
                self._run([blob])
            except Exception as err:
                sniffed = None if self.audio else formats.sniff_bytes(blob[:16], blob[-64:])
                reason = sniffed or _dali_reason(err)
                bad.append((name, reason))
        return bad


def _dali_reason(err):
    """The line of a DALI pipeline error that says what went wrong (the one after "encountered:")."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    for before, line in zip(lines, lines[1:]):
        if before == "encountered:":
            return line
    return lines[-1] if lines else repr(err)


class _Progress:
    """``checked N/M files (R/s)`` on one line of a terminal's stderr; nothing otherwise."""

    def __init__(self, total):
        self.total, self.start = total, time.perf_counter()
        self.enabled = sys.stderr.isatty()

    def update(self, done):
        if self.enabled:
            rate = done / max(time.perf_counter() - self.start, 1e-9)
            print(f"\rchecked {done:,}/{self.total:,} files ({rate:,.0f}/s)", end="", file=sys.stderr, flush=True)

    def close(self):
        if self.enabled:
            print(file=sys.stderr)


def undecodable(items, threads=None, batch_size=256, audio=False):
    """The images (or audio clips) DALI cannot decode, as ``[(name, reason)]``.

    The next batch is read from disk while DALI decodes the current one.

    Args:
        items: ``(name, read)`` pairs, where ``read()`` returns the encoded bytes.
        threads: DALI decoding threads; all cores when None.
        batch_size: files per DALI run.
        audio: the files are audio clips (WAV, FLAC, Ogg), not images.
    """
    decoder = _Decoder(batch_size, threads or os.cpu_count(), audio)
    progress = _Progress(len(items))

    def read(begin):
        return [(name, read()) for name, read in items[begin : begin + batch_size]]

    bad = []
    with concurrent.futures.ThreadPoolExecutor(1) as reader:
        pending = reader.submit(read, 0)
        for begin in range(0, len(items), batch_size):
            batch = pending.result()
            pending = reader.submit(read, begin + batch_size)
            bad += decoder.bad(batch)
            progress.update(begin + len(batch))
    progress.close()
    return bad


def _read_file(path):
    with open(path, "rb") as f:
        return f.read()


def _read_member(shard, offset, size):
    with open(shard, "rb") as f:
        f.seek(offset)
        return f.read(size)


def _file_items(files):
    return [(file, lambda file=file: _read_file(file)) for file in files]


def _check_speech_commands(root, num_classes, threads):
    """Speech Commands: the layout and lists, then every clip's header and decoding."""
    files, _, classes, problems = formats.scan_speech_commands(root, split=None)  # every clip, once
    if num_classes is not None and num_classes != len(classes):
        problems.append(f"{root}: {len(classes)} word folders, but --num-classes is {num_classes}")
    sniffed = {file: formats.sniff_audio(file) for file in files}
    problems += [f"{file}: {why}" for file, why in sniffed.items() if why]
    # A clip the header check already faults is not decoded again (an empty one would decode "fine").
    items = _file_items([file for file, why in sniffed.items() if not why])
    return problems + [f"{name}: {why}" for name, why in undecodable(items, threads, audio=True)]


def check(root, file_list=None, num_classes=None, threads=None):
    """Everything wrong with the dataset at ``root``, as a list of lines (empty when it is sound).

    Args:
        root: the dataset (see the module docstring).
        file_list: a file list under ``root``, if the dataset is one.
        num_classes: check labels against this; inferred when None.
        threads: DALI decoding threads; all cores when None.
    """
    def decode_problems(items):
        return [f"{name}: {why}" for name, why in undecodable(items, threads)]

    if file_list is not None:
        files, _, _, problems = formats.scan_file_list(file_list, root, num_classes)
        return problems + decode_problems(_file_items(files))
    if all(os.path.isfile(os.path.join(root, name)) for name in formats.SPEECH_SPLITS.values()):
        return _check_speech_commands(root, num_classes, threads)
    if root.endswith(".tar") or glob.glob(os.path.join(root, "*.tar")):
        paths, indexes = formats.shards(root)
        samples, _, problems = formats.scan_shards(paths, indexes, num_classes, use_label_files=False)
        problems += formats.label_file_problems(paths, indexes, samples)
        items = [
            (f"{shard}:{name}", lambda s=shard, o=offset, n=size: _read_member(s, o, n))
            for shard, name, offset, size, _ in samples
        ]
        return problems + decode_problems(items)
    for name in cifar.NUM_CLASSES:
        try:
            for split in ("train", "val"):
                cifar.load_cifar(root, name, split)
        except FileNotFoundError:
            continue
        except Exception as err:  # a malformed file, a bad label or a refused pickle
            return [str(err)]
        return []
    splits = [os.path.join(root, split) for split in ("train", "val")]
    if all(os.path.isdir(split) for split in splits):
        return sum((check(split, num_classes=num_classes, threads=threads) for split in splits), [])
    files, _, classes, problems = formats.scan_image_folder(root)
    if num_classes is not None and num_classes != len(classes):
        problems.append(f"{root}: {len(classes)} class folders, but --num-classes is {num_classes}")
    return problems + decode_problems(_file_items(files))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="ImageFolder, file-list root, folder of tar shards, CIFAR root or Speech Commands root")
    parser.add_argument("--file-list", help="a file with one 'relative/path label' per line, under ROOT")
    parser.add_argument("--num-classes", type=int, help="check labels against this (default: inferred)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="DALI decoding threads (default: all cores, %(default)s here)")
    args = parser.parse_args(argv)
    for name in ("num_classes", "threads"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    try:
        problems = check(args.root, args.file_list, args.num_classes, args.threads)
    except (FileNotFoundError, ValueError) as err:
        problems = [str(err)]
    for line in problems:
        print(line)
    print(f"{len(problems)} problem(s) in {args.root}", file=sys.stderr)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
