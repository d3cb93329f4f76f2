"""Readers for the on-disk layouts the loader accepts: ImageFolder trees, file lists and tar shards.

Each ``scan_*`` function returns what it found and a list of problems, each naming the folder,
file or line at fault; ``check_data`` reports them all. The plain functions (``image_folder``,
``file_list``, ``shards``) raise on the first scan with problems, so nothing is dropped silently.
"""

import array
import collections.abc
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


def _listing(folder, cache):
    """The names in ``folder`` (bytes) as a set, read once; empty if it cannot be read."""
    if folder not in cache:
        try:
            cache[folder] = set(os.listdir(folder or b"."))
        except OSError:
            cache[folder] = set()
    return cache[folder]


def scan_file_list(path, root, num_classes=None):
    """Read a file list: one ``relative/path label`` per line, the path relative to ``root``.

    The list is read line by line into compact arrays, and each folder it names is listed once to
    check that its files exist (a stat per file would cost seconds at ImageNet's 1.28M); a path
    that names a folder passes here and fails, naming itself, when it is read.

    Args:
        path: the list file.
        root: the folder the paths are relative to.
        num_classes: the number of classes; inferred as ``max(label) + 1`` when None.

    Returns:
        ``(files, labels, num_classes, problems)``: the paths (a :class:`FileTable`), the class
        ids (int32), and one problem per bad line, ``path:line: what``, for a malformed line, a
        label outside ``[0, num_classes)`` or a missing image. Lines with problems are left out.
    """
    folder = os.path.join(os.fsencode(root), b"")
    labels, problems, listings = array.array("q"), [], {}

    def groups(f):  # runs of at most 65,536 paths under one folder (the root, or none for absolute paths)
        run, run_folder = [], folder
        for number, line in enumerate(f, 1):
            parts = line.rsplit(None, 1)
            if not parts:
                continue
            if len(parts) != 2 or not parts[1].lstrip(b"-").isdigit():
                problems.append(f"{path}:{number}: expected 'relative/path label', "
                                f"got {line.strip().decode(errors='replace')!r}")
                continue
            relative, label = parts[0].strip(), int(parts[1])
            full = os.path.join(folder, relative)  # os.path.join's rule: an absolute path ignores the root
            parent, _, name = full.rpartition(b"/")
            if not 0 <= label < (num_classes or label + 1):
                bounds = f"outside [0, {num_classes})" if num_classes else "negative"
                problems.append(f"{path}:{number}: label {label} is {bounds} for {os.fsdecode(full)}")
            elif name not in _listing(parent, listings):
                problems.append(f"{path}:{number}: {os.fsdecode(full)} does not exist")
            else:
                entry_folder = b"" if os.path.isabs(relative) else folder
                if entry_folder != run_folder or len(run) == 65536:
                    yield run_folder, run
                    run, run_folder = [], entry_folder
                run.append(full if entry_folder == b"" else relative)
                labels.append(label)
        yield run_folder, run

    with open(path, "rb") as f:
        files = FileTable(groups(f))
    if not len(files) and not problems:
        problems.append(f"{path}: the file list is empty")
    labels = np.frombuffer(labels, np.int64).astype(np.int32)
    if num_classes is None:
        num_classes = int(labels.max(initial=-1)) + 1
    return files, labels, num_classes, problems


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
