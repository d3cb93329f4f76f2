"""Check a dataset before training: decode every image with DALI on the CPU, and check every label.

    python -m dali_mixup.check_data ROOT [--file-list LIST] [--num-classes N]

ROOT is an ImageFolder (or a folder holding train/ and val/ ImageFolders), the root of a file
list, a folder of webdataset tar shards, or a folder holding CIFAR batches. The command lists
every file it cannot decode, every empty class folder, every bad label and every shard label
file that disagrees with its shard, and exits with status 1 if it found any.
"""

import argparse
import glob
import os
import sys

import numpy as np
from nvidia.dali import fn, pipeline_def, types

from dali_mixup import cifar, formats


@pipeline_def(num_threads=2, device_id=None)
def _decode_pipeline(source):
    encoded = fn.external_source(source=source, batch=True, dtype=types.UINT8)
    return fn.decoders.image(encoded, device="cpu", output_type=types.RGB)


def _decode(batch):
    """Decode ``[(name, bytes)]`` in one DALI run; raises what DALI raises."""
    data = [np.frombuffer(blob, dtype=np.uint8) for _, blob in batch]
    pipe = _decode_pipeline(lambda: data, batch_size=len(data), prefetch_queue_depth=1)
    pipe.build()
    pipe.run()


def undecodable(items, batch_size=64):
    """The images DALI cannot decode, as ``[(name, reason)]``.

    Args:
        items: ``(name, read)`` pairs, where ``read()`` returns the encoded bytes.
        batch_size: images per DALI run; a run that fails is retried one image at a time.
    """
    bad = []
    for begin in range(0, len(items), batch_size):
        batch = [(name, read()) for name, read in items[begin : begin + batch_size]]
        try:
            _decode(batch)
            continue
        except Exception:  # a DALI pipeline error is not one type; find the files behind it below
            pass
        for name, blob in batch:
            try:
                _decode([(name, blob)])
            except Exception as err:
                reason = formats.sniff_bytes(blob[:16], blob[-64:]) or str(err).strip().splitlines()[-1]
                bad.append((name, reason))
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


def check(root, file_list=None, num_classes=None):
    """Everything wrong with the dataset at ``root``, as a list of lines (empty when it is sound)."""
    if file_list is not None:
        files, _, _, problems = formats.scan_file_list(file_list, root, num_classes)
        return problems + [f"{name}: {why}" for name, why in undecodable(_file_items(files))]
    if root.endswith(".tar") or glob.glob(os.path.join(root, "*.tar")):
        paths, indexes = formats.shards(root)
        samples, _, problems = formats.scan_shards(paths, indexes, num_classes, use_label_files=False)
        problems += formats.label_file_problems(paths, indexes, samples)
        items = [
            (f"{shard}:{name}", lambda s=shard, o=offset, n=size: _read_member(s, o, n))
            for shard, name, offset, size, _ in samples
        ]
        return problems + [f"{name}: {why}" for name, why in undecodable(items)]
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
        return check(splits[0], num_classes=num_classes) + check(splits[1], num_classes=num_classes)
    files, _, classes, problems = formats.scan_image_folder(root)
    if num_classes is not None and num_classes != len(classes):
        problems.append(f"{root}: {len(classes)} class folders, but --num-classes is {num_classes}")
    return problems + [f"{name}: {why}" for name, why in undecodable(_file_items(files))]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="ImageFolder, file-list root, folder of tar shards, or CIFAR root")
    parser.add_argument("--file-list", help="a file with one 'relative/path label' per line, under ROOT")
    parser.add_argument("--num-classes", type=int, help="check labels against this (default: inferred)")
    args = parser.parse_args(argv)
    if args.num_classes is not None and args.num_classes < 1:
        parser.error(f"--num-classes must be >= 1, got {args.num_classes}")
    try:
        problems = check(args.root, args.file_list, args.num_classes)
    except (FileNotFoundError, ValueError) as err:
        problems = [str(err)]
    for line in problems:
        print(line)
    print(f"{len(problems)} problem(s) in {args.root}", file=sys.stderr)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
