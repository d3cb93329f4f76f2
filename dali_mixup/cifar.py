"""CIFAR-10 and CIFAR-100 in their official layouts: the binary files and the python pickles.

``root`` is the folder that holds the batches folder, as in torchvision:

- ``cifar-10-batches-bin/data_batch_{1..5}.bin``, ``test_batch.bin``: records of 1 label byte
  and 3072 pixel bytes (the R, G and B planes, 32x32 each, row-major);
- ``cifar-100-binary/train.bin``, ``test.bin``: 1 coarse and 1 fine label byte, then 3072;
- ``cifar-10-batches-py/data_batch_{1..5}``, ``test_batch``; ``cifar-100-python/train``, ``test``:
  pickled dicts with ``b"data"`` (uint8 ``[N, 3072]``) and ``b"labels"`` / ``b"fine_labels"``.

Pickles are read with an unpickler that admits only what these files hold, so a file that
carries code is refused before any of it runs.
"""

import codecs
import os
import pickle

import numpy as np

try:
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy < 2
    from numpy.core.multiarray import _reconstruct

NUM_CLASSES = {"cifar10": 10, "cifar100": 100}
_PIXELS = 3 * 32 * 32
_BINARY = {
    "cifar10": ("cifar-10-batches-bin", [f"data_batch_{k}.bin" for k in range(1, 6)], ["test_batch.bin"], 1),
    "cifar100": ("cifar-100-binary", ["train.bin"], ["test.bin"], 2),
}
_PYTHON = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{k}" for k in range(1, 6)], ["test_batch"], b"labels"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], b"fine_labels"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Admits the globals a pickled numpy array needs, and nothing else."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        # Python 3 writes bytes at pickle protocol 2 as _codecs.encode(str, "latin1").
        ("_codecs", "encode"): codecs.encode,
    }

    def __init__(self, file, path):
        super().__init__(file, encoding="bytes")
        self.path = path

    def find_class(self, module, name):
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"{self.path}: refused to load the global '{module}.{name}'; a CIFAR pickle holds only "
                "dicts, lists, bytes, str, int and numpy arrays"
            ) from None


def load_pickle(path):
    """Load one CIFAR python-version file with the restricted unpickler."""
    with open(path, "rb") as f:
        return _RestrictedUnpickler(f, path).load()


def _planes_to_hwc(data, path):
    if data.ndim != 2 or data.shape[1] != _PIXELS or data.dtype != np.uint8:
        raise ValueError(f"{path}: expected uint8 data of shape [N, {_PIXELS}], got {data.dtype} {data.shape}")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def _read_binary(path, label_bytes):
    raw = np.fromfile(path, dtype=np.uint8)
    record = label_bytes + _PIXELS
    if raw.size == 0 or raw.size % record:
        raise ValueError(f"{path}: {raw.size} bytes is not a whole number of {record}-byte CIFAR records")
    raw = raw.reshape(-1, record)
    # The fine label is the last label byte: CIFAR-100 stores coarse, then fine.
    return _planes_to_hwc(raw[:, label_bytes:], path), raw[:, label_bytes - 1].astype(np.int64)


def _read_python(path, label_key):
    batch = load_pickle(path)
    if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
        raise ValueError(f"{path}: expected a dict with b'data' and {label_key!r}")
    data = batch[b"data"]
    if not isinstance(data, np.ndarray):
        raise ValueError(f"{path}: b'data' is a {type(data).__name__}, expected a numpy array")
    labels = batch[label_key]
    if not isinstance(labels, list) or not all(type(label) is int for label in labels):
        raise ValueError(f"{path}: {label_key!r} must be a list of int")
    if len(labels) != len(data):
        raise ValueError(f"{path}: {len(labels)} labels for {len(data)} images")
    return _planes_to_hwc(data, path), np.asarray(labels, dtype=np.int64)


def load_cifar(root, name, split):
    """Load a CIFAR split into memory.

    Args:
        root: the folder that holds ``cifar-10-batches-bin``, ``cifar-10-batches-py``,
            ``cifar-100-binary`` or ``cifar-100-python``. The binary version wins when both are there.
        name: ``"cifar10"`` or ``"cifar100"``.
        split: ``"train"`` or ``"val"`` (the test batch).

    Returns:
        ``(images, labels)``: uint8 ``[N, 32, 32, 3]`` (HWC) and int64 ``[N]``.

    Raises:
        FileNotFoundError: when neither version is under ``root``, or a batch file is missing.
        ValueError: naming the file, for a malformed file or a label outside the classes.
        pickle.UnpicklingError: naming the file, for a pickle that holds anything else.
    """
    if name not in NUM_CLASSES:
        raise ValueError(f"name must be one of {sorted(NUM_CLASSES)}, got {name!r}")
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    for layout, read in ((_BINARY, _read_binary), (_PYTHON, _read_python)):
        folder, train, test, extra = layout[name]
        folder = os.path.join(root, folder)
        if not os.path.isdir(folder):
            continue
        images, labels = [], []
        for file in train if split == "train" else test:
            path = os.path.join(folder, file)
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{path}: missing CIFAR batch file")
            batch_images, batch_labels = read(path, extra)
            bad = np.flatnonzero((batch_labels < 0) | (batch_labels >= NUM_CLASSES[name]))
            if bad.size:
                raise ValueError(
                    f"{path}: record {bad[0]} has label {batch_labels[bad[0]]}, outside [0, {NUM_CLASSES[name]})"
                )
            images.append(batch_images)
            labels.append(batch_labels)
        return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels)
    folders = [layout[name][0] for layout in (_BINARY, _PYTHON)]
    raise FileNotFoundError(f"no {name} data under {root!r}: expected one of the folders {folders}")


def _split(images, labels, parts):
    return list(zip(np.array_split(images, parts), np.array_split(labels, parts)))


def write_cifar(root, name, train, test, class_names):
    """Write a CIFAR set in both official layouts, binary and python, under ``root``.

    Args:
        root: output folder; the batches folders are created in it.
        name: ``"cifar10"`` (train split over 5 batch files) or ``"cifar100"``.
        train: ``(images, labels)``, uint8 ``[N, 32, 32, 3]`` and integer labels.
        test: the same, for the test batch.
        class_names: one name per class.
    """
    bin_folder, bin_train, bin_test, label_bytes = _BINARY[name]
    py_folder, py_train, py_test, label_key = _PYTHON[name]
    for folder in (bin_folder, py_folder):
        os.makedirs(os.path.join(root, folder), exist_ok=True)
    for split_files, (images, labels) in ((zip(bin_train, py_train), train), (zip(bin_test, py_test), test)):
        split_files = list(split_files)
        for (bin_file, py_file), (part_images, part_labels) in zip(
            split_files, _split(images, np.asarray(labels), len(split_files))
        ):
            planes = part_images.transpose(0, 3, 1, 2).reshape(len(part_images), _PIXELS).astype(np.uint8)
            fine = part_labels.astype(np.uint8)[:, None]
            # Our synthetic CIFAR-100 has no superclasses: coarse label = fine // 5, in range [0, 20).
            label_columns = [fine] if label_bytes == 1 else [fine // 5, fine]
            np.concatenate(label_columns + [planes], axis=1).tofile(os.path.join(root, bin_folder, bin_file))
            batch = {
                b"batch_label": f"{py_file} of {name}-like".encode(),
                label_key: [int(label) for label in part_labels],
                b"data": planes,
                b"filenames": [f"{py_file}_{k:05d}.png".encode() for k in range(len(planes))],
            }
            if label_bytes == 2:
                batch[b"coarse_labels"] = [int(label) // 5 for label in part_labels]
            with open(os.path.join(root, py_folder, py_file), "wb") as f:
                pickle.dump(batch, f, protocol=2)
    if name == "cifar10":
        with open(os.path.join(root, bin_folder, "batches.meta.txt"), "w") as f:
            f.write("\n".join(class_names) + "\n\n")
        meta = {b"label_names": [c.encode() for c in class_names], b"num_cases_per_batch": len(train[0]) // 5}
        with open(os.path.join(root, py_folder, "batches.meta"), "wb") as f:
            pickle.dump(meta, f, protocol=2)
    else:
        with open(os.path.join(root, bin_folder, "fine_label_names.txt"), "w") as f:
            f.write("\n".join(class_names) + "\n")
        with open(os.path.join(root, py_folder, "meta"), "wb") as f:
            pickle.dump({b"fine_label_names": [c.encode() for c in class_names]}, f, protocol=2)
