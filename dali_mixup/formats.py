"""Readers for the on-disk layouts the loader accepts: ImageFolder trees, file lists and tar shards.

Each ``scan_*`` function returns what it found and a list of problems, each naming the folder,
file or line at fault; ``check_data`` reports them all. The plain functions (``image_folder``,
``file_list``, ``shards``) raise on the first scan with problems, so nothing is dropped silently.
"""

import glob
import os

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
)
_TAIL = 64


def is_image_file(name):
    return name.lower().endswith(IMG_EXTENSIONS)


def raise_problems(kind, problems, error=ValueError):
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise error(f"{len(problems)} problem(s) in {kind}:\n  {shown}{more}")


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
        ``(files, labels, classes, problems)``: paths, class ids, class names, and one line for
        each class folder that holds no image.

    Raises:
        FileNotFoundError: if ``root`` is not a folder or has no class folder.
    """
    if not os.path.isdir(root):
        raise FileNotFoundError(f"dataset root {root!r} is not a folder")
    classes = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
    if not classes:
        raise FileNotFoundError(f"no class folders in {root!r}; expected the layout root/class_x/image.JPEG")
    files, labels, problems = [], [], []
    for label, name in enumerate(classes):
        folder = os.path.join(root, name)
        found = [
            os.path.join(parent, file)
            for parent, _, names in sorted(os.walk(folder, followlinks=True))
            for file in sorted(names)
            if is_image_file(file)
        ]
        if not found:
            problems.append(f"{folder}: empty class folder (no file with an extension in {IMG_EXTENSIONS}, "
                            "in it or in its sub-folders)")
        files += found
        labels += [label] * len(found)
    return files, labels, classes, problems


def image_folder(root):
    """:func:`scan_image_folder`, raising FileNotFoundError that names every empty class folder."""
    files, labels, classes, problems = scan_image_folder(root)
    raise_problems(root, problems, FileNotFoundError)
    return files, labels, classes


def scan_file_list(path, root, num_classes=None):
    """Read a file list: one ``relative/path label`` per line, the path relative to ``root``.

    Args:
        path: the list file.
        root: the folder the paths are relative to.
        num_classes: the number of classes; inferred as ``max(label) + 1`` when None.

    Returns:
        ``(files, labels, num_classes, problems)``; each problem is ``path:line: what``, for a
        malformed line, a label outside ``[0, num_classes)`` or a missing image. Lines with
        problems are left out of ``files``.
    """
    entries, problems = [], []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            parts = line.rsplit(maxsplit=1)
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                problems.append(f"{path}:{number}: expected 'relative/path label', got {line.strip()!r}")
                continue
            entries.append((number, os.path.join(root, parts[0].strip()), int(parts[1])))
    if not entries and not problems:
        problems.append(f"{path}: the file list is empty")
    if num_classes is None:
        num_classes = max((label for _, _, label in entries), default=-1) + 1
    files, labels = [], []
    for number, file, label in entries:
        if not 0 <= label < num_classes:
            problems.append(f"{path}:{number}: label {label} is outside [0, {num_classes}) for {file}")
        elif not os.path.isfile(file):
            problems.append(f"{path}:{number}: {file} does not exist")
        else:
            files.append(file)
            labels.append(label)
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


def read_index(index):
    """The samples of one shard from its DALI index file: a list of ``{ext: (offset, size, name)}``."""
    with open(index, encoding="utf-8") as f:
        header = f.readline().split()
        if len(header) != 2 or not header[0].startswith("v1."):
            raise ValueError(f"{index}: not a DALI webdataset index (header {' '.join(header)!r})")
        samples = []
        for line in f:
            fields = line.split()
            samples.append(
                {fields[k]: (int(fields[k + 1]), int(fields[k + 2]), fields[k + 3]) for k in range(0, len(fields), 4)}
            )
    if len(samples) != int(header[1]):
        raise ValueError(f"{index}: header says {header[1]} samples, found {len(samples)}")
    return samples


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
    with open(path, encoding="ascii", errors="replace") as f:
        header, *lines = f.read().splitlines()
    if header != f"{LABELS_HEADER} {count}" or len(lines) != count or not all(line.isdigit() for line in lines):
        raise ValueError(
            f"{path}: not a label file for the {count} samples of {shard}; "
            f"rewrite it with: python -m dali_mixup.index_shards {shard} --force"
        )
    return [int(line) for line in lines]


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
        ``(samples, num_classes, problems)``. ``samples`` holds, in reading order,
        ``(shard, image_name, image_offset, image_size, label)``; each problem names
        ``shard:member``.
    """
    samples, label_names, problems = [], [], []
    for path, index in zip(paths, indexes):
        entries = read_index(index)
        labels = _label_file(path, index, len(entries)) if use_label_files else None
        with open(path, "rb") as tar:
            for k, components in enumerate(entries):
                image = next((components[ext] for ext in SHARD_IMAGE_EXTS if ext in components), None)
                if image is None or SHARD_LABEL_EXT not in components:
                    names = ", ".join(name for _, _, name in components.values())
                    problems.append(f"{path}:{names}: a sample needs one of {SHARD_IMAGE_EXTS} and a .cls")
                    continue
                offset, size, name = components[SHARD_LABEL_EXT]
                if labels is None:
                    tar.seek(offset)
                    data = tar.read(size)
                    label = parse_label(data)
                    if label is None:
                        problems.append(f"{path}:{name}: label must be ASCII digits, got {data[:16]!r}")
                        continue
                else:
                    label = labels[k]
                label_names.append((name, "" if labels is None else f" (read from {labels_path(path)})"))
                offset, size, name = image
                samples.append((path, name, offset, size, label))
    if num_classes is None:
        num_classes = max((sample[-1] for sample in samples), default=-1) + 1
    for (path, _, _, _, label), (name, source) in zip(samples, label_names):
        if label >= num_classes:
            problems.append(f"{path}:{name}: label {label} is outside [0, {num_classes}){source}")
    return samples, num_classes, problems


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
            labels = _label_file(path, index, len(read_index(index)))
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
        ``(files, labels, classes, problems)``: paths, class ids, word names, and one line for each
        problem: a file in a word folder that is not a clip, a word folder with no clip, a listed
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
    files = [os.path.join(root, clip) for clip in chosen]
    return files, [clips[clip] for clip in chosen], classes, problems


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
    """What is wrong with an audio file, judged by its header; None if nothing.

    For a WAV, the ``data`` chunk is found: no samples, or fewer bytes than the header promises
    (a truncated file, which decoders read as a shorter clip), is reported. FLAC and Ogg are
    judged by their signature only. This does not decode: ``check_data`` does that.
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(12)
            chunk = _wav_data_chunk(f, size) if head.startswith(b"RIFF") and head[8:12] == b"WAVE" else False
    except OSError as err:
        return f"cannot be read ({err.strerror})"
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
