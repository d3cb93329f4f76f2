"""Write the index file (``shard.idx``) and the label file (``shard.labels``) beside every webdataset shard.

    python -m dali_mixup.index_shards ROOT [--force]

ROOT is a folder of ``.tar`` shards or one shard. ``fn.readers.webdataset`` needs the index
files to seek to samples and to split the shards across ranks. The label files let the loader
check every label at start-up without reading each sample's ``.cls`` from the shards. Files
that exist and are newer than their shard are kept unless ``--force``; a shard with a bad
sample gets no label file, and the command lists the problems and exits with status 1.
"""

import argparse
import glob
import os
import sys

from dali_mixup.formats import index_path, is_fresh, labels_path, write_label_file


def write_index(shard):
    """Write ``shard``'s index file with DALI's own ``wds2idx`` tool; returns the index path."""
    from wds2idx import IndexCreator  # installed with DALI

    index = index_path(shard)
    with IndexCreator(shard, index, verbose=False) as creator:
        creator.create_index()
    return index


def index_shard(shard, force=False):
    """Write the index and label files of ``shard`` where missing or stale (all with ``force``).

    Returns:
        ``(files written, problems)``; a shard with problems gets no label file.
    """
    written, problems = [], []
    index = index_path(shard)
    if force or not is_fresh(index, shard):
        written.append(write_index(shard))
    if force or written or not is_fresh(labels_path(shard), shard, index):
        problems = write_label_file(shard, index)
        if not problems:
            written.append(labels_path(shard))
    return written, problems


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="a folder of .tar shards, or one .tar")
    parser.add_argument("--force", action="store_true", help="rewrite index and label files that exist")
    args = parser.parse_args(argv)
    paths = [args.root] if args.root.endswith(".tar") else sorted(glob.glob(os.path.join(args.root, "*.tar")))
    if not paths:
        parser.error(f"no .tar shards in {args.root!r}")
    written, problems = [], []
    for path in paths:
        files, found = index_shard(path, args.force)
        written += files
        problems += found
    print(f"{len(paths)} shard(s): wrote {len(written)} index and label file(s)")
    if problems:
        print("no label file for the shards with these problems (python -m dali_mixup.check_data lists them all):",
              *problems, sep="\n", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
