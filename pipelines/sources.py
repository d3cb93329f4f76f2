"""Data sources: every dataset format behind one small face, so that a new format is one new class.

A source scans its data when it is made (through ``dali_mixup.formats`` and ``dali_mixup.cifar``,
which name every problem), and then knows its classes, its size and its labels, and reads any
sample by its index. Which samples a rank reads, in which batches, is not the source's business:
``dali_mixup.epochs.EpochPlan`` decides it once for every format, and a :class:`Feed` hands the
plan's batches of the current epoch to the graph through one ``fn.external_source``. So every
format is sharded exactly alike, an epoch can be chosen (``Feed.start``) and ended early
(``Feed.stop``) without rebuilding the pipeline, and DALI's checkpoints restore the feed's place
in the epoch.

The face (:class:`Source`):

- ``num_classes``, ``len(source)`` (samples), ``labels`` (int32, one per sample), ``mean`` and
  ``std`` (the normalization);
- ``modality``: ``"image"`` (the pipelines of ``pipelines.images``) or ``"audio"`` (``pipelines.speech``);
- ``splits``: the splits it has (``"train"``, ``"val"``, and ``"test"`` for Speech Commands);
- ``encoded``: whether :meth:`Source.load` gives encoded bytes for the pipeline to decode (files,
  shards) or decoded uint8 HWC images (CIFAR, held in memory);
- ``load(indices)``: the samples' data; ``name(index)``: the file (or shard member) behind a sample;
  ``sniff(index)``: what looks wrong with it, or None;
- ``read(feed, device)``: the graph nodes ``(data, labels)`` of the feed's batches;
- what a ``DataLoader``'s dataset shows: ``classes`` and ``class_to_idx`` where the format names
  its classes, ``samples`` and ``targets`` where it has files, and ``root``.
"""

import collections
import functools
import os

import numpy as np
from nvidia.dali import fn, types

from dali_mixup import cifar, formats

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
    labels: np.ndarray

    def __len__(self):
        return len(self.labels)

    def read_bytes(self, index):
        """The encoded bytes of sample ``index`` (encoded sources)."""
        raise NotImplementedError

    def sniff_data(self, data):
        """What is wrong with encoded bytes, judged without decoding them (``formats.sniff_bytes``), or None."""
        return formats.sniff_bytes(data[:16], data[-64:])

    def load(self, indices):
        """The data of the samples ``indices`` (an int array): a list of uint8 arrays (encoded sources), or
        one batch array (CIFAR).

        Every encoded sample is sniffed before it goes to DALI, whose CPU decoder dies by SIGSEGV
        on an empty or a non-image buffer (seen with DALI 2.4 unless it comes last in its batch):
        such samples raise :class:`BrokenSamples` here, naming them, for about 1 µs a sample.
        """
        data, broken = [], []
        for index in indices:
            blob = self.read_bytes(index)
            why = self.sniff_data(blob)
            if why:
                broken.append(f"{self.name(index)}: {why}")
            data.append(np.frombuffer(blob, dtype=np.uint8))
        if broken:
            raise BrokenSamples(broken)
        return data

    def name(self, index):
        """The file (or shard member) behind sample ``index``, for messages."""
        return f"sample {index}"

    def sniff(self, index):
        """What looks wrong with sample ``index`` without decoding it, or None."""
        return self.sniff_data(self.read_bytes(index))

    def read(self, feed, *, device):
        """The graph nodes ``(data, labels)`` of the feed's batches: data on the CPU, labels int32 on the CPU."""
        return fn.external_source(source=feed.encoded_batch, num_outputs=2, batch_info=True,
                                  dtype=[types.UINT8, types.INT32], ndim=[1, 0])

    def __repr__(self):
        return f"{type(self).__name__}({len(self)} samples, {self.num_classes} classes, root={getattr(self, 'root', None)!r})"


class BrokenSamples(RuntimeError):
    """Samples that are broken, named one a line (``name: what is wrong``)."""

    def __init__(self, lines):
        super().__init__(f"{len(lines)} file(s) are broken:\n  " + "\n  ".join(lines[:20])
                         + "\nRun `python -m dali_mixup.check_data` on the dataset for a full check.")


def _read_file(path):
    """A file's bytes (one open, fstat and read: ~10 µs for a JPEG in the page cache)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        data = os.read(fd, size)
        while len(data) < size:  # a read of a regular file returns all of it, but need not
            more = os.read(fd, size - len(data))
            if not more:
                break
            data += more
    finally:
        os.close(fd)
    return data


class _Files(Source):
    """Image (or audio) files and their class ids, read by path."""

    def __init__(self, root, files, labels, num_classes, classes=None):
        self.root, self.files, self.labels, self.num_classes = root, files, labels, num_classes
        if classes is not None:
            self.classes = classes
            self.class_to_idx = {name: k for k, name in enumerate(classes)}

    def read_bytes(self, index):
        try:
            return _read_file(self.files.path(index))
        except OSError as err:
            raise OSError(err.errno, f"cannot read {self.name(index)}: {err.strerror}") from err

    def name(self, index):
        return self.files[index]

    @property
    def samples(self):
        """``(path, class id)`` for every sample, as ``ImageFolder.samples`` (a view; no list is kept)."""
        return _Samples(self.files, self.labels)

    @property
    def targets(self):
        """The class ids, as ``ImageFolder.targets``."""
        return self.labels.tolist()


class _Samples(collections.abc.Sequence):
    """``(path, label)`` pairs over a :class:`formats.FileTable` and its labels."""

    def __init__(self, files, labels):
        self._files, self._labels = files, labels

    def __len__(self):
        return len(self._files)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[k] for k in range(*index.indices(len(self)))]
        return self._files[index], int(self._labels[index])


class ImageFolder(_Files):
    """``root/class_x/**/*.JPEG``, scanned exactly as torchvision's ImageFolder (``formats.scan_image_folder``)."""

    def __init__(self, root, *, split, file_list=None, num_classes=None):
        files, labels, classes = formats.image_folder(root)
        if num_classes is not None and num_classes != len(classes):
            raise ValueError(f"num_classes={num_classes}, but {root!r} holds {len(classes)} class folders")
        super().__init__(root, files, labels, len(classes), classes)


class FileList(_Files):
    """A file with one ``relative/path label`` per line, the paths relative to ``root``."""

    def __init__(self, root, *, split, file_list, num_classes=None):
        super().__init__(root, *formats.file_list(file_list, root, num_classes))
        self.file_list = file_list


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
    """Webdataset tar shards (an image and an ASCII ``.cls`` per sample) with their DALI index files.

    The index files give every image's offset and size, so a sample is one read at its offset;
    the labels come from the shards' label files (or their ``.cls`` members) at the scan.
    """

    def __init__(self, root, *, split, file_list=None, num_classes=None):
        self.root = root
        paths, indexes = formats.shards(root)
        self.samples, self.num_classes, problems = formats.scan_shards(paths, indexes, num_classes)
        formats.raise_problems(root, problems)
        self.labels = self.samples.labels

    def read_bytes(self, index):
        return self.samples.read(index)

    def name(self, index):
        shard, name, *_ = self.samples[index]
        return f"{shard}:{name}"

    @property
    def targets(self):
        return self.labels.tolist()


class Cifar(Source):
    """CIFAR-10 or CIFAR-100 in either official layout, held in memory (on the GPU with ``device="gpu"``).

    Two external sources, because the images may live on the GPU while the labels stay on the
    CPU; both read the feed's batch of the same iteration. With ``device="gpu"`` the set is
    copied once to the pipeline's GPU (``device_id``, which is torchrun's local rank, not torch's
    current device), and a batch is gathered there with no copy from the host.
    """

    encoded = False
    image_size = 32
    mean, std = CIFAR_MEAN, CIFAR_STD

    def __init__(self, root, *, split, name, file_list=None, num_classes=None):
        expected = cifar.NUM_CLASSES[name]
        if num_classes is not None and num_classes != expected:
            raise ValueError(f"num_classes={num_classes} does not match {name} ({expected})")
        self.root, self.num_classes = root, expected
        images, labels = cifar.load_cifar(root, name, split)
        self.images, self.labels = np.ascontiguousarray(images), labels.astype(np.int32)
        self._gpu_copies = {}

    def on_gpu(self, device):
        """The images as a torch tensor on ``device``, copied once per device."""
        if device not in self._gpu_copies:
            import torch

            self._gpu_copies[device] = torch.from_numpy(self.images).to(device)
        return self._gpu_copies[device]

    def load(self, indices):
        return self.images[indices]

    @property
    def targets(self):
        return self.labels.tolist()

    def read(self, feed, *, device):
        if device == "gpu":
            images = _GpuGather(self, feed)
        else:
            def images(info):
                return self.images[feed.indices(info)]

        images = fn.external_source(source=images, batch_info=True, device=device, layout="HWC")
        labels = fn.external_source(source=lambda info: self.labels[feed.indices(info)], batch_info=True)
        return images, labels


class _GpuGather:
    """CIFAR batches gathered on the pipeline's GPU: the set and each epoch's order are copied there once."""

    def __init__(self, source, feed):
        import torch
        from nvidia.dali import Pipeline

        self.feed, self.gpu = feed, torch.device("cuda", Pipeline.current().device_id)
        self.images = source.on_gpu(self.gpu)
        self._order = (None, None)

    def __call__(self, info):
        import torch

        begin, end = self.feed.span(info)
        if self._order[0] is not self.feed.order:
            self._order = (self.feed.order, torch.from_numpy(self.feed.order).to(self.gpu))
        return self.images[self._order[1][begin:end]]


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
        super().__init__(root, files, labels, len(classes), classes)

    def sniff_data(self, data):
        return formats.sniff_audio_bytes(data)


SOURCES = {
    "imagefolder": ImageFolder,
    "filelist": FileList,
    "webdataset": Shards,
    "cifar10": functools.partial(Cifar, name="cifar10"),
    "cifar100": functools.partial(Cifar, name="cifar100"),
    "speechcommands": SpeechCommands,
}


class Feed:
    """The batches of a source's epochs for ``fn.external_source``: DALI's iteration k of an epoch is
    batch k of the :class:`dali_mixup.epochs.EpochPlan` for the epoch given to :meth:`start`.

    The last few batches handed to DALI are kept (``in_flight``): a decoding error is in one of
    them, and :meth:`explain` names the files among them that look broken.

    Args:
        source: a :class:`Source`.
        plan: a :class:`dali_mixup.epochs.EpochPlan` over the source's samples.
    """

    def __init__(self, source, plan):
        self.source, self.plan = source, plan
        self.epoch, self.order, self._ends, self._stopped = None, None, [], False
        self.in_flight = collections.deque(maxlen=4)  # DALI runs at most prefetch_queue_depth (2) ahead
        self._last = None

    def start(self, epoch):
        """Feed ``epoch``'s batches from the next iteration on (DALI's epoch begins after a reset)."""
        self.epoch, self.order = epoch, self.plan.indices(epoch)
        self._ends = np.cumsum(self.plan.batch_sizes())
        self._stopped, self._last = False, None

    def stop(self):
        """End the epoch at the next iteration DALI asks for: the batches already asked for still come."""
        self._stopped = True

    def span(self, info):
        """``(begin, end)`` of iteration ``info.iteration`` (a DALI ``BatchInfo``) in ``order``; StopIteration at the end."""
        if self._stopped or info.iteration >= len(self._ends):
            raise StopIteration
        begin = self._ends[info.iteration - 1] if info.iteration else 0
        end = self._ends[info.iteration]
        if self._last != (self.epoch, info.iteration):  # the sources of one iteration share one batch
            self._last = (self.epoch, info.iteration)
            self.in_flight.append(self.order[begin:end])
        return begin, end

    def indices(self, info):
        """The sample indices of the iteration's batch."""
        begin, end = self.span(info)
        return self.order[begin:end]

    def encoded_batch(self, info):
        """``(data, labels)`` of the iteration, for a two-output external source."""
        indices = self.indices(info)
        return self.source.load(indices), self.source.labels[indices]

    def explain(self, err):
        """Re-raise a pipeline error naming the samples behind it, or return if none can be found.

        Only the batches in flight are looked at (at most ``in_flight``'s 4 batches, whatever the
        dataset's size): each sample is sniffed (``Source.sniff``), and where none looks broken
        the encoded ones are decoded here, one batch at a time, to find those DALI cannot decode.
        """
        if not self.source.encoded:
            return
        suspects = sorted({int(index) for batch in self.in_flight for index in batch})
        bad = [f"{self.source.name(index)}: {why}" for index in suspects if (why := self.source.sniff(index))]
        if not bad:
            from dali_mixup.check_data import decoding_errors

            audio = self.source.modality == "audio"
            for batch in self.in_flight:
                blobs = [(self.source.name(index), self.source.read_bytes(index)) for index in batch]
                bad += [f"{name}: {why}" for name, why in decoding_errors(blobs, audio=audio)]
        if bad:
            raise BrokenSamples(list(dict.fromkeys(bad))) from err  # one in two batches in flight is named once
