"""Readers for the on-disk layouts the loader accepts: ImageFolder trees, file lists and tar shards.

Each ``scan_*`` function returns what it found and a list of problems, each naming the folder,
file or line at fault; ``check_data`` reports them all. The plain functions (``image_folder``,
``file_list``, ``shards``) raise on the first scan with problems, so nothing is dropped silently.
"""

import array
import collections.abc
import concurrent.futures
import glob
import io
import os

import numpy as np

# The extensions torchvision.datasets.ImageFolder accepts, compared case-insensitively.
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

# Image components of a webdataset sample, as fn.readers.webdataset's ``ext`` spells them.
SHARD_IMAGE_EXTS = ("jpg", "jpeg", "JPEG", "png")
SHARD_LABEL_EXT = "cls"

# Leading bytes of the image formats DALI's decoders read.
_SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"P5", "PGM"),
    (b"P6", "PPM"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
)
_TAIL = 64
# Leading bytes of image formats DALI's decoders do not read (seen with DALI 2.4's CPU decoder).
_UNSUPPORTED = ((b"GIF87a", "GIF"), (b"GIF89a", "GIF"), (b"\x00\x00\x01\x00", "ICO"))


def is_image_file(name):
    return name.lower().endswith(IMG_EXTENSIONS)


_BYTES_EXTENSIONS = tuple(ext.encode() for ext in IMG_EXTENSIONS)


def raise_problems(kind, problems, error=ValueError):
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise error(f"{len(problems)} problem(s) in {kind}:\n  {shown}{more}")


class FileTable(collections.abc.Sequence):
    """File paths kept compactly: a sequence of ``str`` paths that holds no string per file.

    The names are one ``bytes`` blob of NUL-terminated names with an int64 array of their ends,
    each name under one of a few folders (an int32 index per file): about 30 bytes a file for
    ImageNet, where a list of paths and labels takes about 170.

    Args:
        groups: ``(folder, names)`` pairs in order: the folder as ``str`` or ``bytes`` (the names
            are joined to it as they are), the names as a list of ``bytes``.
    """

    def __init__(self, groups=()):
        folders, chunks, counts = [], [], []
        for folder, names in groups:
            if names:
                folders.append(os.fsencode(folder))
                chunks.append(b"\0".join(names) + b"\0")
                counts.append(len(names))
        self._blob = b"".join(chunks)
        self._ends = np.flatnonzero(np.frombuffer(self._blob, np.uint8) == 0)
        self._folders = folders
        self._folder_of = np.repeat(np.arange(len(folders), dtype=np.int32), counts)
        if len(self._ends) != len(self._folder_of):
            raise ValueError("a file name holds a NUL byte")

    @classmethod
    def from_spans(cls, data, starts, ends, folders, folder_of):
        """The names ``data[starts[k]:ends[k]]`` (``data`` a :func:`read_padded` uint8 array, the spans in
        order and apart, each followed in it by a byte that is not part of it), under
        ``folders[folder_of[k]]``, with no object per name. ``data`` may be changed."""
        table = cls()
        lengths = ends - starts
        width = int(lengths.max(initial=0)) + 1
        if width <= 256:  # short names (ImageNet's): gather them, each with its zero padding as terminator
            table._blob = _by_chunks(lambda starts, lengths: _windows(data, starts, lengths, width)[
                np.arange(width) <= lengths[:, None]].tobytes(), starts, lengths)
        else:
            data[ends] = 0  # the byte after each name becomes its terminator, and the text between goes
            marks = np.zeros(len(data) + 1, np.int8)
            marks[starts], marks[ends + 1] = 1, -1
            table._blob = data[np.cumsum(marks[:-1], dtype=np.int8).view(bool)].tobytes()
        table._ends = np.cumsum(lengths + 1) - 1
        table._folders = [os.fsencode(folder) for folder in folders]
        table._folder_of = np.asarray(folder_of, dtype=np.int32)
        return table

    @classmethod
    def concatenate(cls, tables):
        """One table of the names of ``tables`` in turn (their folders kept apart)."""
        table, blobs, ends, folder_of, offset = cls(), [], [], [], 0
        for part in tables:
            blobs.append(part._blob)
            ends.append(part._ends + offset)
            folder_of.append(part._folder_of + len(table._folders))
            table._folders += part._folders
            offset += len(part._blob)
        table._blob = b"".join(blobs)
        table._ends = np.concatenate([np.zeros(0, np.int64), *ends])
        table._folder_of = np.concatenate([np.zeros(0, np.int32), *folder_of]).astype(np.int32)
        return table

    def __len__(self):
        return len(self._ends)

    def path(self, index):
        """The path of file ``index`` as ``bytes`` (what ``open`` takes without decoding)."""
        start = self._ends[index - 1] + 1 if index else 0
        return self._folders[self._folder_of[index]] + self._blob[start : self._ends[index]]

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[k] for k in range(*index.indices(len(self)))]
        if not -len(self) <= index < len(self):
            raise IndexError(f"file index {index} out of range for {len(self)} files")
        return os.fsdecode(self.path(index % len(self)))

    def __repr__(self):
        return f"FileTable({len(self)} files)"


def _image_names(folder):
    """``(directory, names)`` of the image files under ``folder`` (bytes), in torchvision's order.

    torchvision walks ``sorted(os.walk(folder, followlinks=True))`` and sorts each directory's
    names; a folder without sub-folders (ImageNet's) is read with one ``scandir`` instead.
    """
    names, nested = [], False
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_dir():
                nested = True
            elif entry.name.lower().endswith(_BYTES_EXTENSIONS):
                names.append(entry.name)
    if not nested:
        return [(folder + b"/", sorted(names))]
    return [(parent + b"/", sorted(name for name in files if name.lower().endswith(_BYTES_EXTENSIONS)))
            for parent, _, files in sorted(os.walk(folder, followlinks=True))]


def scan_image_folder(root):
    """Scan an ImageFolder tree ``root/class_x/**/*.JPEG`` exactly as torchvision's ``ImageFolder`` does.

    Classes are the sorted names of the folders in ``root`` (symlinks to folders included). Each
    class takes every file under its folder, recursively and following symlinks, whose name ends
    with one of ``IMG_EXTENSIONS`` in any case; folders are walked in sorted order of their paths
    and files in sorted order within a folder, so the files, their order and their labels are
    torchvision's (``torchvision.datasets.folder.make_dataset``). Anything else is skipped, as
    there: a folder named ``x.jpg`` is a folder, a ``notes.txt`` is not an image.

    Args:
        root: the folder that holds one sub-folder per class.

    Returns:
        ``(files, labels, classes, problems)``: the paths (a :class:`FileTable`), the class ids
        (int32), the class names, and one line for each class folder that holds no image.

    Raises:
        FileNotFoundError: if ``root`` is not a folder or has no class folder.
    """
    if not os.path.isdir(root):
        raise FileNotFoundError(f"dataset root {root!r} is not a folder")
    classes = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
    if not classes:
        raise FileNotFoundError(f"no class folders in {root!r}; expected the layout root/class_x/image.JPEG")
    counts, problems = [], []

    def groups():  # one class at a time, so that only one class's names are ever held as objects
        for name in classes:
            found = _image_names(os.fsencode(os.path.join(root, name)))
            counts.append(sum(len(names) for _, names in found))
            if not counts[-1]:
                problems.append(f"{os.path.join(root, name)}: empty class folder (no file with an extension in "
                                f"{IMG_EXTENSIONS}, in it or in its sub-folders)")
            yield from found

    files = FileTable(groups())
    labels = np.repeat(np.arange(len(classes), dtype=np.int32), counts)
    return files, labels, classes, problems


def image_folder(root):
    """:func:`scan_image_folder`, raising FileNotFoundError that names every empty class folder."""
    files, labels, classes, problems = scan_image_folder(root)
    raise_problems(root, problems, FileNotFoundError)
    return files, labels, classes


_WHITESPACE = np.zeros(256, bool)
_WHITESPACE[[9, 10, 11, 12, 13, 32]] = True  # bytes.split()'s whitespace
_PAD = 4104  # zero bytes after a text read by read_padded: a window of up to 4 KiB (PATH_MAX) reads no further


def read_padded(path):
    """A file's bytes as a uint8 array, followed (beyond its length) by ``_PAD`` zero bytes for :func:`_windows`."""
    size = os.path.getsize(path)
    buffer = np.zeros(size + _PAD, np.uint8)
    with open(path, "rb") as f:
        f.readinto(memoryview(buffer)[:size])
    return buffer[:size]


def _windows(data, starts, lengths, width):
    """``[len(starts), width]`` uint8: each span's bytes, zero-padded (a span is cut at ``width``); ``data`` is
    a :func:`read_padded` array (or any array with ``width`` readable bytes after its end)."""
    if width > _PAD:
        raise ValueError(f"a span of {width} bytes is longer than the {_PAD} that can be read past a text")
    beyond = np.lib.stride_tricks.as_strided(data, shape=(len(data) + width,), writeable=False)
    rows = np.lib.stride_tricks.sliding_window_view(beyond, width)[starts]
    rows[np.arange(width) >= np.minimum(lengths, width)[:, None]] = 0
    return rows


def _by_chunks(function, *arrays, size=65536):
    """``function(*arrays)`` on ``size`` elements at a time, the results concatenated: temporaries of a few MB,
    which stay in the cache and in glibc's heap, instead of one the size of ImageNet (30-40% faster here)."""
    if len(arrays[0]) <= size:
        return function(*arrays)
    results = [function(*(array[k : k + size] for array in arrays)) for k in range(0, len(arrays[0]), size)]
    if isinstance(results[0], tuple):
        return tuple(np.concatenate(parts) for parts in zip(*results))
    if isinstance(results[0], bytes):
        return b"".join(results)
    return np.concatenate(results)


def _integers(data, starts, ends):
    """``(values, ok)``: the tokens ``data[starts:ends]`` as int64, and whether each is 1-18 ASCII digits."""
    return _by_chunks(lambda starts, ends: _integers_of(data, starts, ends), starts, ends)


def _integers_of(data, starts, ends):
    lengths = ends - starts
    width = int(min(18, lengths.max(initial=1)))
    digits = _windows(data, starts, lengths, width) - np.uint8(ord("0"))  # wraps: a non-digit is > 9
    ok = (lengths >= 1) & (lengths <= width)
    values = np.zeros(len(starts), np.int64)
    for column in range(width):  # Horner's rule, one column of digits at a time
        inside = column < lengths
        ok &= ~inside | (digits[:, column] <= 9)
        values = np.where(inside, values * 10 + digits[:, column], values)
    return np.where(ok, values, 0), ok


def _hashes(data, starts, ends):
    """A 64-bit hash of each span ``data[starts:ends]``: its bytes as zero-padded uint64 words, each times its
    own odd constant, summed (equal spans hash alike; a collision is a 2**-64 chance)."""
    words = max(1, -(-int((ends - starts).max(initial=1)) // 8))
    weights = np.random.default_rng(0x5EED).integers(1, 2**63, size=words, dtype=np.uint64) * 2 + 1

    def hashed(starts, ends):
        rows = np.ascontiguousarray(_windows(data, starts, ends - starts, words * 8))
        return (rows.view(np.uint64) * weights).sum(axis=1, dtype=np.uint64)

    return _by_chunks(hashed, starts, ends)


def _strip(data, starts, ends):
    """The spans with leading and trailing whitespace removed (a span of only whitespace becomes empty)."""
    starts, ends = starts.copy(), ends.copy()
    while True:  # lines rarely have more than one such byte: a few passes over the few that do
        lead = (starts < ends) & _WHITESPACE[data[starts]]
        trail = (starts < ends) & _WHITESPACE[data[np.maximum(ends - 1, 0)]]
        if not (lead.any() or trail.any()):
            return starts, ends
        starts += lead
        ends -= trail


def _last_blank(data, starts, ends):
    """``(found, where)``: each line's last whitespace, looked for in its last 20 bytes (a label has at most
    18 digits; ``where`` is the line's start where none is found)."""
    window = np.maximum(ends - 20, 0)
    columns = np.arange(20, dtype=np.int32)
    blank = _WHITESPACE[_windows(data, window, np.full(len(window), 20), 20)]
    blank &= (columns >= (starts - window)[:, None]) & (columns < (ends - window)[:, None])
    found = blank.any(axis=1)
    return found, np.where(found, window + 19 - np.argmax(blank[:, ::-1], axis=1), starts)


def scan_file_list(path, root, num_classes=None):
    """Read a file list: one ``relative/path label`` per line, the path relative to ``root``.

    The path is the line up to its last run of whitespace (so it may hold spaces), stripped, the
    label the digits after it. The list is parsed as one array, with no object per line (1.28M
    lines in well under a second), and each folder it names is listed once to check that its files
    exist, comparing 64-bit hashes of the folders and names (a stat per file would cost seconds);
    a path that names a folder passes here and fails, naming itself, when it is read.

    Args:
        path: the list file.
        root: the folder the paths are relative to.
        num_classes: the number of classes; inferred as ``max(label) + 1`` when None.

    Returns:
        ``(files, labels, num_classes, problems)``: the paths (a :class:`FileTable`), the class
        ids (int32), and one problem per bad line, ``path:line: what``, for a malformed line, a
        label outside ``[0, num_classes)`` or a missing image. Lines with problems are left out.
    """
    data = read_padded(path)
    newlines = np.flatnonzero(data == 10)
    line_ends = np.concatenate((newlines, [len(data)] if len(data) and data[-1] != 10 else []))
    line_starts = np.concatenate(([0], newlines[: len(line_ends) - 1] + 1)).astype(np.int64)
    line_starts, line_ends = _strip(data, line_starts, line_ends.astype(np.int64))
    used = np.flatnonzero(line_ends > line_starts)  # blank lines are skipped
    line_starts, line_ends = line_starts[used], line_ends[used]
    # The last whitespace of each line, in its last 20 bytes (a label has at most 18 digits): the path ends there.
    shaped, gap = _by_chunks(lambda starts, ends: _last_blank(data, starts, ends), line_starts, line_ends)
    path_start, path_end = _strip(data, line_starts, gap)
    folder = os.path.join(os.fsencode(root), b"")
    absolute = data[path_start] == ord("/")
    with concurrent.futures.ThreadPoolExecutor(1) as lister:  # the folders are listed while the rest is done
        found = _existing(data, path_start, path_end, absolute, folder, lister)
        negative = shaped & (data[gap + 1] == ord("-"))
        labels, digits = _integers(data, gap + 1 + negative, line_ends)
        labels = np.where(negative, -labels, labels)
        shaped &= digits & (path_end > path_start)
        upper = num_classes if num_classes is not None else int(labels[shaped].max(initial=-1)) + 1
        in_range = shaped & (labels >= 0) & (labels < upper)
        files = FileTable.from_spans(data, path_start[in_range], path_end[in_range], [folder, b""],
                                     absolute[in_range].astype(np.int32))
        exists = in_range & found()
    if not exists[in_range].all():
        files = FileTable.from_spans(data, path_start[exists], path_end[exists], [folder, b""],
                                     absolute[exists].astype(np.int32))
    problems = {}

    def full_path(k):
        return os.fsdecode(os.path.join(folder, data[path_start[k]:path_end[k]].tobytes()))

    for k in np.flatnonzero(~shaped):
        got = data[line_starts[k]:line_ends[k]].tobytes().decode(errors="replace")
        problems[used[k]] = f"{path}:{used[k] + 1}: expected 'relative/path label', got {got!r}"
    for k in np.flatnonzero(shaped & ~in_range):
        bounds = f"outside [0, {num_classes})" if num_classes is not None else "negative"
        problems[used[k]] = f"{path}:{used[k] + 1}: label {labels[k]} is {bounds} for {full_path(k)}"
    for k in np.flatnonzero(in_range & ~exists):
        problems[used[k]] = f"{path}:{used[k] + 1}: {full_path(k)} does not exist"
    if not len(used):
        problems[0] = f"{path}: the file list is empty"
    return files, labels[exists].astype(np.int32), upper, [problems[line] for line in sorted(problems)]


def _existing(data, starts, ends, absolute, folder, lister):
    """A function that says whether each path ``data[starts:ends]`` (relative to ``folder`` unless
    ``absolute``) names an entry of its folder. Every folder named is listed once, on ``lister`` (an
    executor, so the listing runs beside the caller's work); a path's (folder, name) hash is then
    looked up among the listings' (a sort and a binary search: no object per path)."""
    if not len(starts):
        return lambda: np.zeros(0, bool)
    slashes = np.flatnonzero(data == ord("/"))
    last_slash = slashes[np.maximum(np.searchsorted(slashes, ends) - 1, 0)] if len(slashes) else starts - 1
    nested = (last_slash >= starts) & (last_slash < ends)
    parent_end = np.where(nested, last_slash, starts)
    name_start = np.where(nested, last_slash + 1, starts)
    parents = _hashes(data, starts, parent_end) ^ absolute.astype(np.uint64)
    # One path of each folder: a folder's lines usually come together, so look where the folder changes first.
    changes = np.flatnonzero(np.concatenate(([True], parents[1:] != parents[:-1])))
    representatives = changes[np.unique(parents[changes], return_index=True)[1]]
    folders = [(data[starts[k]:parent_end[k]].tobytes(), parents[k]) for k in representatives]
    listing = lister.submit(_list_folders, folders, folder)
    mixed = np.uint64(0x9E3779B97F4A7C15)  # the folder's hash is mixed in, so that a name pairs with its folder
    keys = _hashes(data, name_start, ends) + parents * mixed

    def found():
        listed, listed_starts, listed_ends, folder_hashes, counts = listing.result()
        if not len(listed_ends):
            return np.zeros(len(starts), bool)
        listed_keys = np.sort(_hashes(listed, listed_starts, listed_ends) + np.repeat(folder_hashes, counts) * mixed)
        return listed_keys[np.minimum(np.searchsorted(listed_keys, keys), len(listed_keys) - 1)] == keys

    return found


def _list_folders(folders, root):
    """The names in each ``(folder, hash)`` under ``root``, as one padded text of NUL-terminated names with
    their spans, and each listed folder's hash and name count (a folder that cannot be listed has none)."""
    chunks, hashes, counts = [], [], []
    for parent, parent_hash in folders:
        try:
            names = os.listdir(os.path.join(root, parent) if parent else root or b".")
        except OSError:
            continue
        chunks.append(b"\0".join(names) + b"\0")
        hashes.append(parent_hash)
        counts.append(len(names))
    size = sum(map(len, chunks))
    listed = np.frombuffer(b"".join(chunks) + bytes(_PAD), np.uint8)[:size]
    ends = np.flatnonzero(listed == 0)
    return listed, np.concatenate(([0], ends[:-1] + 1)), ends, np.asarray(hashes, np.uint64), counts


def file_list(path, root, num_classes=None):
    """:func:`scan_file_list`, raising ValueError that names the file and line of every problem."""
    files, labels, num_classes, problems = scan_file_list(path, root, num_classes)
    raise_problems(path, problems)
    return files, labels, num_classes


def index_path(shard):
    return shard[: -len(".tar")] + ".idx"


def shards(root):
    """The webdataset tar shards under ``root`` (a folder, or one ``.tar`` file) and their index files.

    Raises:
        FileNotFoundError: if there is no shard, or naming the shards whose ``.idx`` file is
            missing, with the command that writes them.
    """
    paths = [root] if root.endswith(".tar") else sorted(glob.glob(os.path.join(root, "*.tar")))
    if not paths:
        raise FileNotFoundError(f"no .tar shards in {root!r}")
    indexes = [index_path(path) for path in paths]
    missing = [path for path, index in zip(paths, indexes) if not os.path.isfile(index)]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} shard(s) have no index file: {', '.join(missing)}. "
            f"Write them with: python -m dali_mixup.index_shards {root}"
        )
    return paths, indexes


def parse_label(data):
    """A ``.cls`` component's class id, or None unless it is plain ASCII digits (what the graph parses)."""
    if not data or len(data) > 8 or not data.isdigit():
        return None
    return int(data)


LABELS_HEADER = "dali-mixup-labels-v1"


def labels_path(shard):
    return shard[: -len(".tar")] + ".labels"


def is_fresh(path, *sources):
    """Whether ``path`` exists and is at least as new as every one of ``sources``."""
    try:
        return os.path.getmtime(path) >= max(os.path.getmtime(source) for source in sources)
    except FileNotFoundError:
        return False


def _label_file(shard, index, count):
    """The class ids of ``shard``'s samples from its ``.labels`` file, in index order.

    None when the file is missing, or older than the shard or its index (then the labels are
    read from the shard).

    Raises:
        ValueError: naming the file, if it does not hold ``count`` class ids.
    """
    path = labels_path(shard)
    if not is_fresh(path, shard, index):
        return None
    with open(path, "rb") as f:
        header, *lines = f.read().splitlines()
    if header != f"{LABELS_HEADER} {count}".encode() or len(lines) != count or not all(map(bytes.isdigit, lines)):
        raise ValueError(
            f"{path}: not a label file for the {count} samples of {shard}; "
            f"rewrite it with: python -m dali_mixup.index_shards {shard} --force"
        )
    return [int(line) for line in lines]


class ShardTable(collections.abc.Sequence):
    """The samples of a set of shards, compactly: a sequence of ``(shard, image_name, offset, size, label)``.

    Arrays hold each sample's shard, its image's offset and size in the tar and its label; the
    member names are a :class:`FileTable`.
    """

    def __init__(self, shards, shard_of, offsets, sizes, labels, names):
        self.shards = list(shards)
        self.shard_of = np.asarray(shard_of, dtype=np.int32)
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.sizes = np.asarray(sizes, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int32)
        self.names = names

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[k] for k in range(*index.indices(len(self)))]
        return (self.shards[self.shard_of[index]], self.names[index], int(self.offsets[index]),
                int(self.sizes[index]), int(self.labels[index]))

    def __eq__(self, other):
        return isinstance(other, ShardTable) and list(self) == list(other)

    def read(self, index):
        """The image bytes of sample ``index``."""
        fd = os.open(self.shards[self.shard_of[index]], os.O_RDONLY)
        try:
            return os.pread(fd, int(self.sizes[index]), int(self.offsets[index]))
        finally:
            os.close(fd)


_SHARD_IMAGE_BYTES = tuple(ext.encode() for ext in SHARD_IMAGE_EXTS)


def _index_lines(index):
    """The sample lines of a DALI index file, each a list of ``bytes`` fields, checked against its header."""
    with open(index, "rb") as f:
        header, *lines = f.read().splitlines()
    header = header.split()
    if len(header) != 2 or not header[0].startswith(b"v1.") or not header[1].isdigit():
        raise ValueError(f"{index}: not a DALI webdataset index (header {b' '.join(header).decode(errors='replace')!r})")
    if len(lines) != int(header[1]):
        raise ValueError(f"{index}: header says {int(header[1])} samples, found {len(lines)}")
    return [line.split() for line in lines]


def read_index(index):
    """The samples of one shard from its DALI index file: a list of ``{ext: (offset, size, name)}``."""
    return [{fields[k].decode(): (int(fields[k + 1]), int(fields[k + 2]), fields[k + 3].decode())
             for k in range(0, len(fields), 4)} for fields in _index_lines(index)]


def _components(fields):
    """``(image, label)`` of an index line: each ``(offset, size, name)`` (bytes fields), None where missing."""
    image = label = None
    for k in range(0, len(fields) - 3, 4):
        ext = fields[k]
        if ext == b"cls":
            label = fields[k + 1 : k + 4]
        elif ext in _SHARD_IMAGE_BYTES and (image is None or _SHARD_IMAGE_BYTES.index(ext) < image[0]):
            image = (_SHARD_IMAGE_BYTES.index(ext), fields[k + 1 : k + 4])
    return (image and image[1]), label


def _token_spans(data):
    """``(starts, ends)`` of the whitespace-separated tokens of a text (a uint8 array), no object a token."""
    text = ~_WHITESPACE[data]
    starts = np.flatnonzero(text[1:] & ~text[:-1]) + 1
    ends = np.flatnonzero(text[:-1] & ~text[1:]) + 1
    if len(data) and text[0]:
        starts = np.concatenate(([0], starts))
    if len(data) and text[-1]:
        ends = np.concatenate((ends, [len(data)]))
    return starts, ends


def _word(data, starts, ends):
    """Each token's first 4 bytes as a uint32 (zero-padded; a longer token becomes 0, matching no extension)."""
    rows = np.ascontiguousarray(_windows(data, starts, ends - starts, 4)).view("<u4")[:, 0]
    return np.where(ends - starts <= 4, rows, 0)


def _packed(name):
    return np.frombuffer(name.encode().ljust(4, b"\0"), "<u4")[0]


def _read_texts(paths):
    """The files' bytes, concatenated into one padded uint8 array, and where each begins."""
    chunks = []
    for path in paths:
        with open(path, "rb") as f:
            chunks.append(f.read())
    begins = np.cumsum([0] + [len(chunk) for chunk in chunks])
    return np.frombuffer(bytearray(b"".join(chunks) + bytes(_PAD)), np.uint8)[: begins[-1]], begins


def _scan_regular_shards(paths, indexes, num_classes):
    """:func:`scan_shards` for the usual shards, parsed as arrays with no object per sample: every shard has a
    fresh label file, and every index line has an image component and a ``.cls`` (in either order). None
    where that does not hold (the general path then reads the shards)."""
    if not all(is_fresh(labels_path(path), path, index) for path, index in zip(paths, indexes)):
        return None
    data, _ = _read_texts(indexes)
    starts, ends = _token_spans(data)
    line_starts = np.concatenate(([0], np.flatnonzero(data == 10) + 1))
    first = np.searchsorted(starts, line_starts)  # each line's first token
    per_line = np.diff(np.concatenate((first, [len(starts)])))
    # Each index is its header line ("v1.x N") and then N lines of 8 tokens: the headers are the 2-token lines.
    headers = np.flatnonzero(per_line == 2)
    samples = np.flatnonzero(per_line == 8)
    if len(headers) != len(paths) or len(headers) + len(samples) != np.count_nonzero(per_line):
        return None
    counts, ok = _integers(data, starts[first[headers] + 1], ends[first[headers] + 1])
    if not ok.all() or counts.sum() != len(samples) or not np.all(np.diff(headers) == counts[:-1] + 1):
        return None
    token = first[samples][:, None] + np.arange(8)
    ext = _word(data, starts[token[:, [0, 4]]].ravel(), ends[token[:, [0, 4]]].ravel()).reshape(-1, 2)
    is_cls = ext == _packed(SHARD_LABEL_EXT)
    image_at = np.zeros(ext.shape, bool)
    for name in reversed(SHARD_IMAGE_EXTS):  # a sample takes the first of the extensions it has
        image_at = np.where((ext == _packed(name)).any(axis=1)[:, None], ext == _packed(name), image_at)
    if not (is_cls.sum(axis=1) == 1).all() or not (image_at.sum(axis=1) == 1).all() or (is_cls & image_at).any():
        return None
    image = token[np.arange(len(samples)), 4 * np.argmax(image_at, axis=1)]  # the image component's ext token
    offsets, ok_offsets = _integers(data, starts[image + 1], ends[image + 1])
    sizes, ok_sizes = _integers(data, starts[image + 2], ends[image + 2])
    if not (ok_offsets.all() and ok_sizes.all()):
        return None
    # A label file: "dali-mixup-labels-v1 N", then N lines of digits (_label_file names a bad one).
    label_data, begins = _read_texts([labels_path(path) for path in paths])
    label_starts, label_ends = _token_spans(label_data)
    header = np.searchsorted(label_starts, begins[:-1])
    wanted = [f"{LABELS_HEADER} {count}".encode() for count in counts]
    if len(label_starts) != len(samples) + 2 * len(paths) or any(
            label_data[begin : begin + len(line)].tobytes() != line for begin, line in zip(begins, wanted)):
        return None
    is_label = np.ones(len(label_starts), bool)
    is_label[header], is_label[header + 1] = False, False
    labels, ok_labels = _integers(label_data, label_starts[is_label], label_ends[is_label])
    if not ok_labels.all():
        return None
    shard_of = np.repeat(np.arange(len(paths), dtype=np.int32), counts)
    names = FileTable.from_spans(data, starts[image + 3], ends[image + 3], [b""], np.zeros(len(samples), np.int32))
    problems = []
    if num_classes is not None:
        cls_name = token[np.arange(len(samples)), 4 * np.argmax(is_cls, axis=1)] + 3
        for k in np.flatnonzero(labels >= num_classes):
            member = data[starts[cls_name[k]]:ends[cls_name[k]]].tobytes().decode(errors="replace")
            problems.append(f"{paths[shard_of[k]]}:{member}: label {labels[k]} is outside [0, {num_classes}) "
                            f"(read from {labels_path(paths[shard_of[k]])})")
        keep = labels < num_classes
        if not keep.all():
            return ShardTable(paths, shard_of[keep], offsets[keep], sizes[keep], labels[keep],
                              _kept(names, keep)), num_classes, problems
    else:
        num_classes = int(labels.max(initial=-1)) + 1
    return ShardTable(paths, shard_of, offsets, sizes, labels, names), num_classes, problems


def _scan_regular_shards_in_chunks(paths, indexes, num_classes, chunk=64):
    """:func:`_scan_regular_shards` ``chunk`` shards at a time (arrays of a few MB, not of every index at
    once: 1.28M samples 20-25% faster here), the results joined; None if any chunk is not regular."""
    if num_classes is None:  # every chunk must check against the classes of all
        found = _scan_regular_shards_in_chunks(paths, indexes, 2**31 - 1, chunk)
        if found is None:
            return None
        table, _, problems = found
        return table, int(table.labels.max(initial=-1)) + 1, problems
    parts = []
    for begin in range(0, len(paths), chunk):
        part = _scan_regular_shards(paths[begin : begin + chunk], indexes[begin : begin + chunk], num_classes)
        if part is None:
            return None
        parts.append((begin, part))
    tables = [table for _, (table, _, _) in parts]
    merged = ShardTable(paths, np.concatenate([table.shard_of + begin for begin, (table, _, _) in parts]),
                        np.concatenate([table.offsets for table in tables]), np.concatenate([table.sizes for table in tables]),
                        np.concatenate([table.labels for table in tables]),
                        FileTable.concatenate([table.names for table in tables]))
    return merged, num_classes, [problem for _, (_, _, problems) in parts for problem in problems]


def _kept(table, keep):
    """A FileTable of the names ``keep`` marks (a bool array), rebuilt through their text."""
    return FileTable([(b"", [os.fsencode(table[k]) for k in np.flatnonzero(keep)])])


def scan_shards(paths, indexes, num_classes=None, use_label_files=True):
    """Every sample's label in the shards, through their index files.

    A shard's labels come from its ``.labels`` file (written by ``index_shards``) when that is
    newer than the shard and its index, else from the ``.cls`` members: one small read per
    sample, which over ImageNet's 1.28M samples costs minutes.

    Args:
        paths: the ``.tar`` shards.
        indexes: their index files.
        num_classes: the number of classes; inferred as ``max(label) + 1`` when None.
        use_label_files: False reads every label from the shards.

    Returns:
        ``(samples, num_classes, problems)``. ``samples`` (a :class:`ShardTable`) holds, in
        reading order, ``(shard, image_name, image_offset, image_size, label)``; each problem
        names ``shard:member``.
    """
    if use_label_files:
        regular = _scan_regular_shards_in_chunks(paths, indexes, num_classes)
        if regular is not None:
            return regular
    shard_of, offsets, sizes, labels = array.array("i"), array.array("q"), array.array("q"), array.array("i")
    problems = []

    def names():  # one shard's member names at a time, for the FileTable
        for shard, (path, index) in enumerate(zip(paths, indexes)):
            lines = _index_lines(index)
            from_file = _label_file(path, index, len(lines)) if use_label_files else None
            shard_names = []
            with open(path, "rb") as tar:
                for k, fields in enumerate(lines):
                    image, cls = _components(fields)
                    if image is None or cls is None:
                        found = ", ".join(fields[j + 3].decode(errors="replace") for j in range(0, len(fields) - 3, 4))
                        problems.append(f"{path}:{found}: a sample needs one of {SHARD_IMAGE_EXTS} and a .cls")
                        continue
                    if from_file is None:
                        tar.seek(int(cls[0]))
                        data = tar.read(int(cls[1]))
                        label = parse_label(data)
                        if label is None:
                            problems.append(f"{path}:{cls[2].decode(errors='replace')}: label must be ASCII digits, "
                                            f"got {data[:16]!r}")
                            continue
                    else:
                        label = from_file[k]
                    if num_classes is not None and label >= num_classes:
                        source = "" if from_file is None else f" (read from {labels_path(path)})"
                        problems.append(f"{path}:{cls[2].decode(errors='replace')}: label {label} is outside "
                                        f"[0, {num_classes}){source}")
                        continue
                    shard_of.append(shard)
                    offsets.append(int(image[0]))
                    sizes.append(int(image[1]))
                    labels.append(label)
                    shard_names.append(image[2])
            yield b"", shard_names

    table = FileTable(names())
    if num_classes is None:
        num_classes = max(labels, default=-1) + 1
    return ShardTable(paths, shard_of, offsets, sizes, labels, table), num_classes, problems


def label_file_problems(paths, indexes, samples):
    """The label files that are in use (fresh) but malformed or disagree with ``samples``.

    ``samples`` are those :func:`scan_shards` read from the shards themselves
    (``use_label_files=False``).
    """
    truth = {}
    for shard, *_, label in samples:
        truth.setdefault(shard, []).append(label)
    problems = []
    for path, index in zip(paths, indexes):
        try:
            labels = _label_file(path, index, len(_index_lines(index)))
        except ValueError as err:
            problems.append(str(err))
            continue
        if labels is not None and labels != truth.get(path, []):
            problems.append(
                f"{labels_path(path)}: disagrees with the .cls members of {path}; "
                f"rewrite it with: python -m dali_mixup.index_shards {path} --force"
            )
    return problems


def write_label_file(shard, index):
    """Write ``shard``'s ``.labels`` file from its ``.cls`` members, unless one is bad.

    Returns:
        The problems found (then no file is written); an empty list when it was written.
    """
    samples, _, problems = scan_shards([shard], [index], use_label_files=False)
    if problems:
        return problems
    path = labels_path(shard)
    with open(path + ".tmp", "w", encoding="ascii") as f:
        f.write(f"{LABELS_HEADER} {len(samples)}\n" + "".join(f"{label}\n" for *_, label in samples))
    os.replace(path + ".tmp", path)
    return []


def sniff_bytes(head, tail):
    """What is wrong with an encoded image, judged by its first and last bytes; None if nothing.

    The signature must be one DALI decodes, and a JPEG must end with its end-of-image marker,
    which a truncated file lacks. This does not decode: ``check_data`` does that.
    """
    if not head:
        return "is empty"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return None
    for signature, kind in _SIGNATURES:
        if head.startswith(signature):
            if kind == "JPEG" and b"\xff\xd9" not in tail:
                return "is a truncated JPEG (no end-of-image marker)"
            return None
    for signature, kind in _UNSUPPORTED:
        if head.startswith(signature):
            return f"is a {kind} image, a format DALI's decoders do not read (unsupported)"
    return "is not an image (unknown signature)"


def sniff_image(path):
    """:func:`sniff_bytes` for a file on disk."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
            f.seek(max(0, os.path.getsize(path) - _TAIL))
            tail = f.read()
    except OSError as err:
        return f"cannot be read ({err.strerror})"
    return sniff_bytes(head, tail)


# Speech Commands (Warden 2018), v0.01 and v0.02, read with torchaudio's SPEECHCOMMANDS rules.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")
SPEECH_SPLITS = {"val": "validation_list.txt", "test": "testing_list.txt"}
BACKGROUND_NOISE = "_background_noise_"
NOHASH = "_nohash_"


def _read_split_list(root, name, clips, problems):
    """The clips named in ``root/name`` (``word/file.wav`` per line), each checked against ``clips``."""
    path = os.path.join(root, name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} is missing: a Speech Commands root holds validation_list.txt "
                                "and testing_list.txt beside its word folders")
    listed = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            clip = line.strip()
            if not clip:
                continue
            if clip in listed:
                problems.append(f"{path}, line {number}: {clip!r} is listed again (first on line {listed[clip]})")
            elif clip not in clips:
                problems.append(f"{path}, line {number}: {clip!r} is not a clip of a word folder in {root}")
            else:
                listed[clip] = number
    return listed


def scan_speech_commands(root, split):
    """Scan a Speech Commands root for one split, by the rules of torchaudio's ``SPEECHCOMMANDS``.

    Classes are the sorted names of the word folders in ``root`` (every folder but
    ``_background_noise_``). A clip is ``root/<word>/<speaker>_nohash_<n>.<ext>``, ``ext`` one of
    ``AUDIO_EXTENSIONS`` in any case. ``"val"`` takes the clips listed in ``validation_list.txt``,
    ``"test"`` those in ``testing_list.txt``, and ``"train"`` every other clip; None takes every
    clip (as ``check_data`` does). The order is the sorted ``word/file`` paths.

    Args:
        root: the folder holding the word folders and the two lists.
        split: ``"train"``, ``"val"``, ``"test"``, or None for all three.

    Returns:
        ``(files, labels, classes, problems)``: paths (a :class:`FileTable`), class ids (int32),
        word names, and one line for each problem: a file in a word folder that is not a clip, a word folder with no clip, a listed
        clip that does not exist or is listed twice, a clip in both lists.

    Raises:
        FileNotFoundError: if ``root`` is not a folder, has no word folder or lacks a list.
        ValueError: for a split other than the three.
    """
    if split not in (None, "train", *SPEECH_SPLITS):
        raise ValueError(f"split must be 'train', 'val', 'test' or None for Speech Commands, got {split!r}")
    if not os.path.isdir(root):
        raise FileNotFoundError(f"dataset root {root!r} is not a folder")
    classes = sorted(entry.name for entry in os.scandir(root) if entry.is_dir() and entry.name != BACKGROUND_NOISE)
    if not classes:
        raise FileNotFoundError(f"no word folders in {root!r}; expected the layout root/<word>/<speaker>_nohash_0.wav")
    clips, problems = {}, []
    for label, word in enumerate(classes):
        folder = os.path.join(root, word)
        names = sorted(os.listdir(folder))
        for name in names:
            if name.lower().endswith(AUDIO_EXTENSIONS) and NOHASH in name:
                clips[f"{word}/{name}"] = label
            else:
                problems.append(f"{os.path.join(folder, name)}: not a clip (expected <speaker>{NOHASH}<n> "
                                f"with an extension in {AUDIO_EXTENSIONS})")
        if not any(name.lower().endswith(AUDIO_EXTENSIONS) for name in names):
            problems.append(f"{folder}: empty word folder (no clip)")
    lists = {name: _read_split_list(root, filename, clips, problems) for name, filename in SPEECH_SPLITS.items()}
    for clip in sorted(lists["val"].keys() & lists["test"].keys()):
        problems.append(f"{clip} is in both {SPEECH_SPLITS['val']} and {SPEECH_SPLITS['test']}")
    if split is None:
        chosen = sorted(clips)
    elif split == "train":
        chosen = sorted(clips.keys() - lists["val"].keys() - lists["test"].keys())
    else:
        chosen = sorted(lists[split])
    files = FileTable([(os.path.join(root, ""), [os.fsencode(clip) for clip in chosen])])
    return files, np.array([clips[clip] for clip in chosen], dtype=np.int32), classes, problems


def speech_commands(root, split):
    """:func:`scan_speech_commands`, raising ValueError that names every problem."""
    files, labels, classes, problems = scan_speech_commands(root, split)
    raise_problems(root, problems)
    return files, labels, classes


def _wav_data_chunk(f, size):
    """``(offset, length)`` of a RIFF/WAVE file's ``data`` chunk as its header gives them, or None."""
    f.seek(12)
    while f.tell() + 8 <= size:
        chunk_id, length = f.read(4), int.from_bytes(f.read(4), "little")
        if chunk_id == b"data":
            return f.tell(), length
        f.seek(length + (length & 1), os.SEEK_CUR)  # chunks are padded to an even length
    return None


def sniff_audio(path):
    """:func:`sniff_audio_bytes` for a file on disk (only its header is read)."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            return _sniff_audio(f, size)
    except OSError as err:
        return f"cannot be read ({err.strerror})"


def sniff_audio_bytes(data):
    """What is wrong with an audio clip, judged by its header; None if nothing.

    For a WAV, the ``data`` chunk is found: no samples, or fewer bytes than the header promises
    (a truncated file, which decoders read as a shorter clip), is reported. FLAC and Ogg are
    judged by their signature only. This does not decode: ``check_data`` does that.
    """
    return _sniff_audio(io.BytesIO(data), len(data))


def _sniff_audio(f, size):
    head = f.read(12)
    chunk = _wav_data_chunk(f, size) if head.startswith(b"RIFF") and head[8:12] == b"WAVE" else False
    if not head:
        return "is empty"
    if head.startswith((b"fLaC", b"OggS")):
        return None
    if chunk is False:
        return "is not audio (not a WAV, FLAC or Ogg signature)"
    if chunk is None:
        return "is a WAV without a data chunk"
    offset, length = chunk
    if length == 0:
        return "is a WAV with no samples"
    if offset + length > size:
        return f"is a truncated WAV (its header promises {length} bytes of samples, the file holds {size - offset})"
    return None
