"""Write the DALI index file (``shard.idx``) beside every webdataset shard that lacks one.

    python -m dali_mixup.index_shards ROOT [--force]

ROOT is a folder of ``.tar`` shards or one shard. ``fn.readers.webdataset`` needs the index
files to seek to samples and to split the shards across ranks.
"""

import argparse
import glob
import os

from dali_mixup.formats import index_path


def write_index(shard):
    """Write ``shard``'s index file with DALI's own ``wds2idx`` tool; returns the index path."""
    from wds2idx import IndexCreator  # installed with DALI

    index = index_path(shard)
    with IndexCreator(shard, index, verbose=False) as creator:
        creator.create_index()
    return index


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="a folder of .tar shards, or one .tar")
    parser.add_argument("--force", action="store_true", help="rewrite index files that exist")
    args = parser.parse_args(argv)
    paths = [args.root] if args.root.endswith(".tar") else sorted(glob.glob(os.path.join(args.root, "*.tar")))
    if not paths:
        parser.error(f"no .tar shards in {args.root!r}")
    written = [write_index(path) for path in paths if args.force or not os.path.isfile(index_path(path))]
    print(f"{len(paths)} shard(s): wrote {len(written)} index file(s), {len(paths) - len(written)} already there")


if __name__ == "__main__":
    main()
