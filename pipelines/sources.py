"""Data sources: every dataset format behind one small face, so that a new format is one new class.

A source scans its data when it is made (through ``dali_mixup.formats`` and ``dali_mixup.cifar``,
which name every problem), and then knows its classes and its size, puts its reader into a DALI
graph, and names the files behind a decoding error. ``make_loader`` picks one from ``SOURCES``;
the pipelines in ``pipelines.images`` take any of them.

The face (:class:`Source`):

- ``num_classes``, ``len(source)`` (samples), ``mean`` and ``std`` (the normalization);
- ``modality``: ``"image"`` (the pipelines of ``pipelines.images``) or ``"audio"`` (``pipelines.speech``);
- ``splits``: the splits it has (``"train"``, ``"val"``, and ``"test"`` for Speech Commands);
- ``encoded``: whether :meth:`Source.read` gives encoded images for the pipeline to decode
  (files, shards) or decoded uint8 HWC images (CIFAR, held in memory);
- ``read(...)``: the graph nodes ``(images, labels)`` of one rank's shard;
- ``num_batches(...)``: batches per epoch on one rank;
- ``iterator_args()``: how DALI's iterator finds the epoch's end (the reader's size, or the
  source's end of epoch);
- ``explain(err)``: re-raise a decoding error naming the files that look broken, or return.
"""

import functools
import math

import numpy as np
from nvidia.dali import Pipeline, fn, types

from dali_mixup import cifar, formats

# The reader's name, which DALI's iterator queries for the epoch size and the shard padding.
READER = "reader"
IMAGENET_MEAN = [0.485 * 255, 0.456 * 255, 0.406 * 255]
IMAGENET_STD = [0.229 * 255, 0.224 * 255, 0.225 * 255]
CIFAR_MEAN = [0.4914 * 255, 0.4822 * 255, 0.4465 * 255]
CIFAR_STD = [0.2470 * 255, 0.2435 * 255, 0.2616 * 255]


class Source:
    """What the loader and the pipelines need from a dataset format (see the module docstring).

    Args (of every source's constructor):
        root: where the data is (a folder, a CIFAR root, ...).
        split: one of ``splits``; sources that hold every split under one root pick one.
        file_list: a list file, for the sources that read one.
        num_classes: checked against the data, or inferred from it when None.
    """

    modality = "image"
    splits = ("train", "val")
    encoded = True
    image_size = None  # the side of every image when all are one square size (CIFAR), else None
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    num_classes: int

    def __len__(self):
        raise NotImplementedError

    def read(self, *, training, shard_id, num_shards, batch_size, device, order_seed):
        """The graph nodes ``(images, labels)`` of this rank's shard, labels as int32 on the CPU.

        Args:
            training: reshuffle every epoch; otherwise read in order, every sample once across ranks.
            shard_id: this rank.
            num_shards: the world size.
            batch_size: samples per batch on this rank.
            device: ``"gpu"`` or ``"cpu"``: where decoded images are put (encoded ones stay on the CPU).
            order_seed: seeds the sample order (the same on every rank): ints for ``numpy.random.default_rng``.
        """
        raise NotImplementedError

    def num_batches(self, batch_size, *, training, shard_id, num_shards):
        """Batches per epoch on rank ``shard_id``, as DALI's reader and iterator make them.

        Train: each rank takes ``len // num_shards`` samples and drops its last partial batch.
        Val: the reader pads every shard to the largest one, ``ceil(len / num_shards)`` samples,
        and the iterator drops the padding from the batches.
        """
        if training:
            return len(self) // num_shards // batch_size
        return math.ceil(math.ceil(len(self) / num_shards) / batch_size)

    def iterator_args(self):
        """Keyword arguments for DALI's iterator that tell it where an epoch ends."""
        return {"reader_name": READER}

    def explain(self, err):
        """Re-raise a pipeline error naming the files that look broken; return if none does."""


def _bad_files_error(err, suspects):
    """Re-raise a decoding error with the files that look broken, or do nothing if none does."""
    bad = [f"{name}: {wrong}" for name, wrong in suspects if wrong]
    if bad:
        raise RuntimeError(
            f"decoding failed; {len(bad)} file(s) look broken:\n  " + "\n  ".join(bad[:20])
            + "\nRun `python -m dali_mixup.check_data` on the dataset for a full check."
        ) from err


class _Files(Source):
    """Image files and their class ids, read with ``fn.readers.file``."""

    def __init__(self, files, labels, num_classes):
        self.files, self.labels, self.num_classes = files, labels, num_classes

    def __len__(self):
        return len(self.files)

    def read(self, *, training, shard_id, num_shards, batch_size, device, order_seed):
        files, labels = self.files, self.labels
        if training:
            # The reader reshuffles every epoch with its own fixed seed; this makes the order depend on ours.
            order = np.random.default_rng(order_seed).permutation(len(files))
            files, labels = [files[k] for k in order], [labels[k] for k in order]
        return fn.readers.file(files=files, labels=labels, **_reader_args(training, shard_id, num_shards))

    def explain(self, err):
        _bad_files_error(err, ((file, formats.sniff_image(file)) for file in self.files))


class ImageFolder(_Files):
    """``root/class_x/**/*.JPEG``, scanned exactly as torchvision's ImageFolder (``formats.scan_image_folder``)."""

    def __init__(self, root, *, split, file_list=None, num_classes=None):
        files, labels, classes = formats.image_folder(root)
        if num_classes is not None and num_classes != len(classes):
            raise ValueError(f"num_classes={num_classes}, but {root!r} holds {len(classes)} class folders")
        super().__init__(files, labels, len(classes))


class FileList(_Files):
    """A file with one ``relative/path label`` per line, the paths relative to ``root``."""

    def __init__(self, root, *, split, file_list, num_classes=None):
        super().__init__(*formats.file_list(file_list, root, num_classes))


def _reader_args(training, shard_id, num_shards):
    # Train reshuffles every epoch; val reads in order and pads the last batch so that DALI's
    # iterator can drop the padding and count every sample once.
    return {"shard_id": shard_id, "num_shards": num_shards, "shuffle_after_epoch": training,
            "pad_last_batch": not training, "name": READER}


def parse_ascii_labels(cls):
    """Turn each ``.cls`` component, ASCII digits such as ``b"417"``, into an int32 class id in the graph.

    The digits are reversed so the units come first, zero-padded to 8 and dotted with the
    powers of ten. ``formats.scan_shards`` has already refused anything but 1-8 digits.
    """
    digits = fn.cast(cls, dtype=types.INT32) - ord("0")
    # fn.flip works on images only, so the digits pass through it as a 1xLx1 HWC image.
    digits = fn.expand_dims(digits, axes=[0, 2])
    digits = fn.reshape(digits, layout="HWC")
    digits = fn.flip(digits, horizontal=1, vertical=0)
    digits = fn.pad(digits, fill_value=0, shape=[1, 8, 1])
    powers = types.Constant(np.array([10**k for k in range(8)], np.int32).reshape(1, 8, 1))
    return fn.reductions.sum(digits * powers)


class Shards(Source):
    """Webdataset tar shards (an image and an ASCII ``.cls`` per sample) with their DALI index files."""

    def __init__(self, root, *, split, file_list=None, num_classes=None):
        self.paths, self.indexes = formats.shards(root)
        self.samples, self.num_classes, problems = formats.scan_shards(self.paths, self.indexes, num_classes)
        formats.raise_problems(root, problems)

    def __len__(self):
        return len(self.samples)

    def read(self, *, training, shard_id, num_shards, batch_size, device, order_seed):
        paths, indexes = self.paths, self.indexes
        if training:
            # The reader's own reshuffle has a fixed seed; the order of the shards makes it depend on ours.
            order = np.random.default_rng(order_seed).permutation(len(paths))
            paths, indexes = [paths[k] for k in order], [indexes[k] for k in order]
        jpegs, cls = fn.readers.webdataset(
            paths=paths,
            index_paths=indexes,
            ext=[";".join(formats.SHARD_IMAGE_EXTS), formats.SHARD_LABEL_EXT],
            missing_component_behavior="error",
            **_reader_args(training, shard_id, num_shards),
        )
        return jpegs, parse_ascii_labels(cls)

    def explain(self, err):
        _bad_files_error(err, _sniff_members(self.samples))


def _sniff_members(samples):
    for shard, name, offset, size, _ in samples:
        with open(shard, "rb") as tar:
            tar.seek(offset)
            data = tar.read(size)
        yield f"{shard}:{name}", formats.sniff_bytes(data[:16], data[-64:])


class Cifar(Source):
    """CIFAR-10 or CIFAR-100 in either official layout, held in memory (on the GPU with ``device="gpu"``).

    An ``fn.external_source`` hands the graph one batch per iteration. Every rank draws the same
    permutation for an epoch from ``(order_seed, epoch)`` and takes its own slice, so the shards
    are disjoint and cover the set. Train takes ``N // num_shards`` samples per rank and drops
    the last partial batch, so all ranks run the same number of steps. Val splits the samples in
    order and its last batch is smaller: every sample is seen once.
    """

    encoded = False
    image_size = 32
    mean, std = CIFAR_MEAN, CIFAR_STD

    def __init__(self, root, *, split, name, file_list=None, num_classes=None):
        expected = cifar.NUM_CLASSES[name]
        if num_classes is not None and num_classes != expected:
            raise ValueError(f"num_classes={num_classes} does not match {name} ({expected})")
        self.num_classes = expected
        images, labels = cifar.load_cifar(root, name, split)
        self.images, self.labels = np.ascontiguousarray(images), labels.astype(np.int32)
        self._gpu_copies = {}

    def on_gpu(self, device):
        """The images as a torch tensor on ``device``, copied once per device."""
        if device not in self._gpu_copies:
            import torch

            self._gpu_copies[device] = torch.from_numpy(self.images).to(device)
        return self._gpu_copies[device]

    def __len__(self):
        return len(self.labels)

    def read(self, *, training, shard_id, num_shards, batch_size, device, order_seed):
        batches = _CifarBatches(self, training, shard_id, num_shards, batch_size, order_seed, device)
        # Two sources, because the images may live on the GPU while the labels stay on the CPU;
        # both derive the same indices from the iteration and epoch.
        images = fn.external_source(source=batches.images, batch_info=True, device=device, layout="HWC")
        labels = fn.external_source(source=batches.labels, batch_info=True)
        return images, labels

    def num_batches(self, batch_size, *, training, shard_id, num_shards):
        if training:
            return len(self) // num_shards // batch_size
        return math.ceil(len(_shard(len(self), False, shard_id, num_shards, order_seed=(), epoch=0)) / batch_size)

    def iterator_args(self):
        return {}  # the external sources end the epoch


def _shard(total, training, shard_id, num_shards, order_seed, epoch):
    """This rank's sample indices for one epoch (see :class:`Cifar`): a slice of the epoch's
    permutation for train, a contiguous range (as DALI's readers split a set) for val."""
    if training:
        per_rank = total // num_shards
        order = np.random.default_rng([*order_seed, epoch]).permutation(total)
        return order[shard_id * per_rank : (shard_id + 1) * per_rank]
    return np.arange(total * shard_id // num_shards, total * (shard_id + 1) // num_shards)


class _CifarBatches:
    """Batches of a :class:`Cifar` set for ``fn.external_source(batch_info=True)``.

    With ``device="gpu"`` the set is copied once to the pipeline's GPU (``device_id``, which is
    torchrun's local rank, not torch's current device), and so is each epoch's order: a batch is
    then gathered on the GPU with no copy from the host.
    """

    def __init__(self, data, training, shard_id, num_shards, batch_size, order_seed, device):
        self.labels_all = data.labels
        self.training, self.shard_id, self.num_shards = training, shard_id, num_shards
        self.batch_size, self.order_seed = batch_size, list(order_seed)
        self.images_all, self.gpu = data.images, None
        if device == "gpu":
            import torch

            self.gpu = torch.device("cuda", Pipeline.current().device_id)
            self.images_all = data.on_gpu(self.gpu)
        self._epoch, self._order, self._order_gpu = None, None, None

    def _indices(self, info):
        """``(begin, end)`` of the batch in this epoch's order."""
        if info.epoch_idx != self._epoch:
            self._epoch = info.epoch_idx
            self._order = _shard(len(self.labels_all), self.training, self.shard_id, self.num_shards,
                                 self.order_seed, self._epoch)
            if self.gpu is not None:
                import torch

                self._order_gpu = torch.from_numpy(self._order).to(self.gpu)
        begin = info.iteration * self.batch_size
        end = begin + self.batch_size
        if begin >= len(self._order) or (self.training and end > len(self._order)):
            raise StopIteration  # train drops the last partial batch
        return begin, end

    def images(self, info):
        begin, end = self._indices(info)
        order = self._order if self.gpu is None else self._order_gpu
        return self.images_all[order[begin:end]]

    def labels(self, info):
        begin, end = self._indices(info)
        return self.labels_all[self._order[begin:end]]


class SpeechCommands(_Files):
    """Google Speech Commands (v0.01, v0.02): ``root/<word>/<speaker>_nohash_<n>.wav`` and the two split lists.

    The splits follow torchaudio's ``SPEECHCOMMANDS`` (``formats.scan_speech_commands``); the
    clips are decoded by ``pipelines.speech``.
    """

    modality = "audio"
    splits = ("train", "val", "test")
    mean = std = None  # each spectrogram is standardized on its own

    def __init__(self, root, *, split, file_list=None, num_classes=None):
        files, labels, classes = formats.speech_commands(root, split)
        if num_classes is not None and num_classes != len(classes):
            raise ValueError(f"num_classes={num_classes}, but {root!r} holds {len(classes)} word folders")
        super().__init__(files, labels, len(classes))

    def explain(self, err):
        _bad_files_error(err, ((file, formats.sniff_audio(file)) for file in self.files))


SOURCES = {
    "imagefolder": ImageFolder,
    "filelist": FileList,
    "webdataset": Shards,
    "cifar10": functools.partial(Cifar, name="cifar10"),
    "cifar100": functools.partial(Cifar, name="cifar100"),
    "speechcommands": SpeechCommands,
}
