"""``make_loader``: a DALI pipeline as an iterable of torch batches, sharded for torchrun."""

import ctypes
import functools
import numbers
import os

import numpy as np
import nvidia.dali
import torch
import torch.distributed as dist
from nvidia.dali import types
from nvidia.dali.plugin.pytorch import DALIGenericIterator

from dali_mixup.epochs import EpochPlan
from dali_mixup.image_options import ImageOptions
from dali_mixup.mixup import Mixing
from pipelines import augment as augment_lib
from pipelines import images as image_pipelines
from pipelines import speech as speech_pipelines
from pipelines.sources import SOURCES, BrokenSamples, Feed

DATASETS = tuple(SOURCES)
STATE_FORMAT = "dali-mixup-loader-state-v1"
AUGMENTS = tuple(augment_lib.AUGMENTS)


class DaliLoader:
    """A DALI pipeline as a ``DataLoader``: iterates ``(images, targets)`` torch tensors on the pipeline's device.

    ``len()`` is the batches per epoch on this rank (the same on every rank). Train targets are
    float32 soft labels ``[B, num_classes]``, or int64 class ids ``[B]`` where nothing mixes or
    smooths them (unless ``soft_targets``); val targets are int64 class ids ``[B]``. With
    ``channels_last`` the images are NCHW tensors in channels-last memory format.

    As with a ``DataLoader`` and its ``DistributedSampler``, every ``iter(loader)`` is a full epoch
    of ``len(loader)`` batches, the epoch's order a function of the seed and the epoch
    (``dali_mixup.epochs``): epochs count up from 0, and :meth:`set_epoch` (or
    ``loader.sampler.set_epoch``) chooses the one the next ``iter()`` reads. An epoch that was
    broken off (a ``break``, or a peek with ``next(iter(loader))``) is ended by the next
    ``iter()``: the batches DALI had already begun (``prefetch_queue_depth``, 2) are run and
    dropped, and the pipeline goes on with the new epoch, never rebuilt. An iterator from before
    then raises if it is advanced.

    :meth:`state_dict` and :meth:`load_state_dict` (torchdata's ``StatefulDataLoader`` names) save and
    restore the loader's place: a new loader made with the same arguments and given the state saved
    after batch k of an epoch yields, from its next ``iter()``, exactly what this one would have from
    batch k + 1 on (the same samples, crops, flips, augmentation and mixing: DALI's checkpoint of the
    pipeline holds its random operators' states and the feed's place), and then the same epochs.

    Args:
        make_pipeline: ``make_pipeline(feed, mixing_enabled, seed, checkpoint)`` returns a DALI pipeline
            over the feed, mixing or not, its random operators seeded with ``seed`` or, with a
            ``checkpoint`` (DALI's, from ``state_dict``), restored from it.
        feed: the ``pipelines.sources.Feed`` of the split on this rank.
        training: the train split (augmented, mixed, reshuffled) or an eval split.
        mixes: the train pipeline mixes (mixup or CutMix), so that :attr:`mixup_enabled` can turn it off.
        channels_last: the pipeline's images are NHWC.
        seed: the augmentation's seed; each pipeline gets its own from it and ``rank``.
        rank: this rank.
    """

    def __init__(self, make_pipeline, feed, *, training, mixes, channels_last, seed, rank):
        self._make_pipeline, self._feed = make_pipeline, feed
        self._training, self._mixes, self._channels_last = training, mixes, channels_last
        self._seed, self._rank = seed, rank
        self._mixing_enabled, self._builds = mixes, 0
        self._next_epoch, self._state, self._generation = 0, "fresh", 0
        self._epoch_in_progress, self._position = None, 0  # the epoch read, and the batches of it yielded
        self._pipeline = self._iterator = None
        self._build()
        self.batch_sampler = None  # as a DataLoader's attribute, which timm's train.py reads

    def _build(self, checkpoint=None):
        """A new pipeline and iterator (the first, after :attr:`mixup_enabled` changed, or restored)."""
        self._pipeline = self._iterator = None  # the old pipeline's memory goes before the new one takes its own
        # Each build seeds its random operators anew, so that a rebuilt pipeline does not replay the first's draws.
        seed = int(np.random.SeedSequence([self._seed, self._rank, self._builds]).generate_state(1)[0] >> 1)
        self._builds += 1
        self._pipeline = self._make_pipeline(self._feed, self._mixing_enabled, seed, checkpoint)
        self._iterator = DALIGenericIterator(
            self._pipeline, ["images", "targets"], auto_reset=False,  # the next epoch starts at the next iter()
            prepare_first_batch=False,  # nothing runs until iterated: errors reach this loader
        )
        self._state = "fresh"

    def __len__(self):
        return len(self._feed.plan)

    @property
    def sampler(self):
        """A ``DistributedSampler``'s face: ``set_epoch``, ``len()`` (this rank's samples an epoch) and ``iter()``."""
        return _Sampler(self)  # made anew each time: a loader that held one would be a reference cycle

    @property
    def dataset(self):
        """The split's source (``pipelines.sources``): ``len()`` is its samples, and ``classes``,
        ``class_to_idx``, ``samples`` and ``targets`` are there where the format has them."""
        return self._feed.source

    @property
    def num_classes(self):
        return self._feed.source.num_classes

    @property
    def batch_size(self):
        return self._feed.plan.batch_size

    @property
    def drop_last(self):
        """True for train (each rank's last partial batch is dropped), False for val (every sample once)."""
        return self._training

    @property
    def pipeline(self):
        """The DALI pipeline, e.g. for ``loader.pipeline.save_graph_to_dot_file(path)``."""
        return self._pipeline

    def set_epoch(self, epoch):
        """Make the next ``iter()`` read ``epoch`` (as ``DistributedSampler.set_epoch``); then ``epoch + 1``, and so on."""
        if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral) or epoch < 0:
            raise ValueError(f"epoch must be an int >= 0, got {epoch!r}")
        self._next_epoch = int(epoch)

    @property
    def mixup_enabled(self):
        """Whether the train batches are mixed; set False to stop mixing from the next ``iter()`` on (timm's
        ``--mixup-off-epoch``), the targets staying soft. The pipeline is built anew once for it."""
        return self._mixing_enabled

    @mixup_enabled.setter
    def mixup_enabled(self, enabled):
        if not isinstance(enabled, bool):
            raise TypeError(f"mixup_enabled must be a bool, got {type(enabled).__name__} ({enabled!r})")
        if enabled and not self._mixes:
            raise ValueError("mixup_enabled=True: this loader was made without mixing (mixup_alpha=0 and no CutMix); "
                             "make one with mixup_alpha or cutmix_alpha > 0")
        if enabled != self._mixing_enabled:
            self._mixing_enabled = enabled
            self._state = "rebuild"

    def state_dict(self):
        """The loader's place, for :meth:`load_state_dict` (tensors, numbers, strings and bytes: what
        ``torch.save`` writes and ``torch.load(weights_only=True)`` reads back)."""
        plan = self._feed.plan
        pending = self._state == "rebuild"  # mixup_enabled changed: the next iter() builds a fresh pipeline
        return {
            "format": STATE_FORMAT, "dali": nvidia.dali.__version__,
            "plan": [plan.num_samples, plan.training, plan.seed, plan.rank, plan.world_size, plan.batch_size,
                     plan.repeats],
            "state": self._state, "epoch": self._epoch_in_progress, "position": self._position,
            "next_epoch": self._next_epoch, "mixing_enabled": self._mixing_enabled, "builds": self._builds,
            "checkpoint": None if pending else self._iterator.checkpoints()[0],
        }

    def load_state_dict(self, state):
        """Continue from ``state`` (:meth:`state_dict` of a loader made with the same arguments): the next
        ``iter()`` yields the rest of the epoch that was being read, or the next epoch.

        Raises:
            ValueError: for a state of another format or DALI version, or of a loader over other
                samples, ranks, batch size or seed.
        """
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise ValueError(f"not a loader state ({STATE_FORMAT}): got {type(state).__name__}")
        if state["dali"] != nvidia.dali.__version__:
            raise ValueError(f"the state was saved with DALI {state['dali']}, this is DALI {nvidia.dali.__version__}: "
                             "DALI's checkpoints are read by the version that wrote them")
        plan = self._feed.plan
        ours = [plan.num_samples, plan.training, plan.seed, plan.rank, plan.world_size, plan.batch_size, plan.repeats]
        theirs = list(state["plan"]) + [0] * (len(ours) - len(state["plan"]))  # (states from before aug_repeats)
        if theirs != ours:
            names = ("samples", "training", "seed", "rank", "world_size", "batch_size", "aug_repeats")
            differ = ", ".join(f"{name} {theirs!r} (here {mine!r})" for name, theirs, mine in
                               zip(names, theirs, ours) if theirs != mine)
            raise ValueError(f"the state is of another loader: {differ}")
        self._mixing_enabled = state["mixing_enabled"]
        self._next_epoch, self._epoch_in_progress = state["next_epoch"], state["epoch"]
        self._position = state["position"]
        if state["checkpoint"] is None:  # a rebuild was pending: the next iter() builds it, as it would have
            self._builds, self._state = state["builds"], "rebuild"
            return
        self._builds = state["builds"] - 1  # the build being restored, which _build counts again
        self._build(state["checkpoint"])
        if state["state"] == "reading":
            self._state = "resumed"
        elif state["state"] == "ended":  # the restored feed is at the epoch's end: let DALI see it, then reset
            self._feed.start(self._epoch_in_progress)
            self._drain()

    def __iter__(self):
        return self._epoch()

    def _begin(self):
        """Get the pipeline ready for the next epoch: end a broken-off one, then feed the new one (or the rest
        of a restored one)."""
        if self._state == "resumed":  # DALI's restored feed asks for batch `position` of the epoch next
            self._feed.start(self._epoch_in_progress)
            self._state = "reading"
            return
        if self._state == "rebuild":
            self._build()
        elif self._state == "reading":  # broken off: let DALI finish the batches it began, and drop them
            self._feed.stop()
            self._drain()
        _release_free_memory()
        epoch = self._next_epoch
        self._feed.start(epoch)
        if self._state == "ended":
            self._iterator.reset()  # DALI asks the feed for the new epoch's first batches here
        self._state = "reading"
        self._epoch_in_progress, self._position, self._next_epoch = epoch, 0, epoch + 1

    def _drain(self):
        while True:
            try:
                next(self._iterator)
            except StopIteration:
                self._state = "ended"
                return

    def _epoch(self):
        # A generator: this runs at the first next(), so an iter() that is never advanced costs nothing.
        self._generation += 1
        generation = self._generation
        self._begin()
        while True:
            if generation != self._generation:
                raise RuntimeError("this iterator's epoch was broken off by a newer iter() of the loader; "
                                   "iterate the newer one")
            try:
                batch = next(self._iterator)[0]
            except StopIteration:
                self._state = "ended"
                return
            except BrokenSamples:  # the feed named them before DALI saw them
                raise
            except Exception as err:  # DALI raises plain errors; name the files behind them
                self._feed.explain(err)
                raise
            self._position += 1
            images, targets = batch["images"], batch["targets"]
            if self._channels_last:
                images = images.permute(0, 3, 1, 2)  # a view: NCHW shape, NHWC memory
            yield images, (targets.view(-1).long() if targets.dtype == torch.int32 else targets)


@functools.lru_cache(maxsize=None)
def _malloc_trim():
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


def _release_free_memory():
    """Give the memory glibc holds free back to the system, once an epoch (a few ms).

    DALI's CPU stages allocate large buffers of varying size every batch; glibc's dynamic mmap
    threshold then serves them from its heap, which it keeps: measured here, RSS grew by 90-130
    MiB over 20 epochs broken off after a batch (and by 270 over 180 batches of 32 in plain
    iteration) without it, and stays flat with it.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


class _Sampler:
    """``loader.sampler``: a ``DistributedSampler``'s face over the loader's epoch order."""

    def __init__(self, loader):
        self._loader = loader

    def set_epoch(self, epoch):
        self._loader.set_epoch(epoch)

    def __len__(self):
        """Samples this rank reads per epoch."""
        return sum(self._loader._feed.plan.batch_sizes())

    def __iter__(self):
        """The sample indices the next ``iter(loader)`` reads on this rank, in order."""
        return iter(self._loader._feed.plan.indices(self._loader._next_epoch).tolist())


def _env_int(name, default):
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an int, got {value!r}") from None


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _check_fraction(name, value, low):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not low <= value <= 1:
        raise ValueError(f"{name} must be a number in [{low:g}, 1], got {value!r}")


def _source_class(dataset):
    source = SOURCES[dataset]
    return getattr(source, "func", source)  # (CIFAR's sources are partials of one class)


def _check_options(dataset, split, root, file_list):
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    splits = _source_class(dataset).splits
    if split not in splits:
        raise ValueError(f"split must be one of {splits} for dataset={dataset!r}, got {split!r}")
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a path, got {type(root).__name__} ({root!r})")
    if not os.path.exists(root):
        raise FileNotFoundError(f"root {os.fspath(root)!r} does not exist")
    if (file_list is None) == (dataset == "filelist"):
        raise ValueError(f"file_list is needed with dataset='filelist' and only then; got {file_list!r}")


def _mixing(split, mixing_args):
    """The train split's mixing (``Mixing``), checked; it applies to train only."""
    alpha = mixing_args["alpha"]
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not alpha >= 0:
        raise ValueError(f"mixup_alpha must be a number >= 0 (0 turns mixup off), got {alpha!r}")
    mixing = Mixing(**mixing_args)
    if split != "train" and mixing != Mixing():
        raise ValueError("mixup_alpha, per_sample, pairs, label_smoothing and the CutMix options apply to split='train' "
                         "only")
    return mixing


def _repeats(aug_repeats, training):
    """The repeated augmentation's count: 0 (off), or a number >= 1 on the train split."""
    if isinstance(aug_repeats, bool) or not isinstance(aug_repeats, numbers.Real) or not (
            aug_repeats == 0 or aug_repeats >= 1):
        raise ValueError(f"aug_repeats must be 0 (off) or a number >= 1, got {aug_repeats!r}")
    if aug_repeats and not training:
        raise ValueError("aug_repeats applies to split='train' only")
    return aug_repeats


def _image_dtype(dtype, device):
    """The DALI type of the images for a torch ``dtype``: float32 (None) or, on the GPU, float16."""
    if dtype is None or dtype == torch.float32:
        return types.FLOAT
    if dtype == torch.float16:
        if device != "gpu":
            raise ValueError("dtype=torch.float16 needs device='gpu'; DALI's CPU operators have no float16")
        return types.FLOAT16
    raise ValueError(f"dtype must be torch.float32 or torch.float16, got {dtype!r}")


def _device(device):
    """``(kind, index)`` for ``device``: ``"gpu"``/``"cuda"``/``"cuda:N"``/a ``torch.device`` or ``"cpu"``."""
    if isinstance(device, torch.device):
        return ("cpu", None) if device.type == "cpu" else ("gpu", device.index) if device.type == "cuda" else (None, None)
    if device in ("gpu", "cuda"):
        return "gpu", None
    if device == "cpu":
        return "cpu", None
    if isinstance(device, str) and device.startswith("cuda:") and device[5:].isdigit():
        return "gpu", int(device[5:])
    return None, None


def _process_group():
    """``(rank, world_size)`` of torch.distributed's default process group, or None when there is none."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return None


def _check_distributed(rank, world_size, local_rank, device, device_index):
    """The rank, world size and GPU: the arguments, else the process group's, else torchrun's environment.

    Launchers differ: torchrun sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; PyTorch Lightning's
    sets ``WORLD_SIZE`` and ``LOCAL_RANK`` but not ``RANK``, and initializes the process group before
    it asks for a dataloader. A world of several ranks whose rank cannot be found is an error,
    never rank 0 on every process.
    """
    group = _process_group()
    if world_size is None:
        world_size = group[1] if group else _env_int("WORLD_SIZE", 1)
    if rank is None:
        if group:
            rank = group[0]
        elif "RANK" in os.environ:
            rank = _env_int("RANK", 0)
        elif world_size == 1:
            rank = 0
        else:
            raise ValueError(f"world_size is {world_size} (from WORLD_SIZE or the argument), but no rank was given: "
                             "RANK is not set and no torch.distributed process group is initialized; pass rank=, "
                             "set RANK (torchrun does), or call torch.distributed.init_process_group() first")
    _check_int("world_size", world_size, 1)
    _check_int("rank", rank, 0)
    if rank >= world_size:
        raise ValueError(f"rank must be < world_size ({world_size}), got {rank}")
    if device_index is not None:
        if local_rank is not None and local_rank != device_index:
            raise ValueError(f"device names GPU {device_index} and local_rank {local_rank}: give one of them")
        local_rank = device_index
    if local_rank is None:
        if "LOCAL_RANK" in os.environ or world_size == 1 or device != "gpu":
            local_rank = _env_int("LOCAL_RANK", 0)
        elif torch.cuda.is_available() and torch.cuda.is_initialized():
            local_rank = torch.cuda.current_device()
        else:
            raise ValueError(f"device='gpu' with world_size={world_size}: which GPU is this rank's? LOCAL_RANK is not "
                             "set; pass local_rank= or a device such as 'cuda:1', or set LOCAL_RANK")
    _check_int("local_rank", local_rank, 0)
    if device == "gpu" and not torch.cuda.is_available():
        raise ValueError("device='gpu' needs CUDA, which torch does not see; use device='cpu'")
    return rank, world_size, local_rank


def _image_pipeline(source, training, options):
    """The train or val pipeline of ``pipelines.images`` for an image source and the image options."""
    crop = options.crop(source, training)
    normalize = options.normalize(source)
    if not training:
        return functools.partial(image_pipelines.val_pipeline, augment=crop, normalize=normalize)
    policies = tuple(options.policies(source))
    # DALI's conditionals transpile the pipeline's Python (about 0.9 s a build here): only where a policy needs them.
    return functools.partial(image_pipelines.train_pipeline, augment=crop, policies=policies,
                             erasing=options.erasing(), normalize=normalize, enable_conditionals=bool(policies))


def _speech_pipeline(training):
    """The train or eval pipeline of ``pipelines.speech`` for an audio source."""
    return speech_pipelines.train_pipeline if training else speech_pipelines.val_pipeline


def make_loader(
    *,
    dataset,
    root,
    split="train",
    batch_size=256,
    device="gpu",
    file_list=None,
    num_classes=None,
    mixup_alpha=0.0,
    per_sample=False,
    pairs=False,
    label_smoothing=0.0,
    soft_targets=False,
    crop_size=None,
    scale=None,
    ratio=(3 / 4, 4 / 3),
    min_crop_area=None,
    hflip=0.5,
    vflip=0.0,
    interpolation="bilinear",
    augment=None,
    adjust_orientation=False,
    channels_last=False,
    dtype=None,
    num_threads=4,
    seed=0,
    rank=None,
    world_size=None,
    local_rank=None,
    cutmix_alpha=0.0,
    cutmix_minmax=None,
    mix_prob=1.0,
    switch_prob=0.5,
    auto_augment=None,
    color_jitter=None,
    color_jitter_prob=None,
    grayscale_prob=0.0,
    gaussian_blur_prob=0.0,
    reprob=0.0,
    remode="const",
    recount=1,
    mean=None,
    std=None,
    crop_pct=None,
    crop_mode="center",
    resize_size=None,
    aug_repeats=0,
):
    """Build the DALI pipeline for a dataset and wrap it as a ``DataLoader``-like iterable (:class:`DaliLoader`).

    The image options take timm's ``create_transform`` / ``create_loader`` names and meanings (docs/loader.md
    has the table, option by option, beside torchvision's reference flags); their defaults are ours,
    the same as before each was added, so that no existing run changes.

    Args:
        dataset: ``"imagefolder"`` (``root/class_x/**/*.JPEG``, classes, files and labels exactly
            as torchvision's ImageFolder finds them), ``"filelist"``, ``"webdataset"`` (tar
            shards with ``.jpg`` and ASCII ``.cls``), ``"cifar10"`` or ``"cifar100"`` (binary or
            python version), or ``"speechcommands"`` (Google Speech Commands v0.01/v0.02: WAV, FLAC
            or Ogg clips as ``[B, 1, 161, 101]`` log spectrograms, see ``pipelines.speech``; the
            image options below do not apply and are refused).
        root: the ImageFolder, the folder the file list's paths are relative to, the folder of
            shards, the folder that holds the CIFAR batches folder, or the Speech Commands root.
        split: ``"train"`` (augmentation, mixup, a new order every epoch) or ``"val"`` (the eval
            transform, every sample once across ranks); ``"test"`` too for Speech Commands
            (``validation_list.txt`` is val, ``testing_list.txt`` test, the rest train).
        batch_size: samples per batch on this rank.
        device: ``"gpu"`` or ``"cuda"`` (decode and augment on the GPU ``local_rank``),
            ``"cuda:N"`` or a ``torch.device`` (on GPU N), or ``"cpu"``.
        file_list: for ``"filelist"``: a file with one ``relative/path label`` per line.
        num_classes: inferred as ``max(label) + 1`` for file lists and shards when None; must
            agree with the data otherwise.
        mixup_alpha: Beta(α, α) for mixup on the train split; 0 is ERM.
        per_sample: one λ per sample instead of one per batch.
        pairs: timm's ``mode="pair"``: samples ``i`` and ``B − 1 − i`` of a batch mix with each
            other, both ways, with one draw (λ, switch, ``mix_prob``, box) per pair; ``batch_size``
            must be even.
        label_smoothing: smoothing of the one-hot targets, in ``[0, 1)``.
        soft_targets: train targets as float32 rows ``[B, num_classes]`` even where nothing mixes
            or smooths them (one-hot rows); by default such targets are int64 class ids ``[B]``,
            as a ``DataLoader`` gives them. Mixed or smoothed targets are always soft.
        crop_size: side of the output images; None is 224, or 32 for CIFAR.
        scale: ``(lo, hi)``: train's random-resized crops cover a share of the image's area uniform
            in it (torchvision's and timm's ``scale``); None is ``(0.08, 1)``.
        ratio: ``(lo, hi)``: their aspect ratio (width / height), log-uniform in it (``ratio``).
        min_crop_area: ``scale``'s lower bound, the upper being 1 (the option from before ``scale``).
        hflip: probability of a horizontal flip in training.
        vflip: probability of a vertical flip in training (timm's ``vflip``; a pass of its own).
        interpolation: the resize's filter: ``"bilinear"`` (antialiased as PIL's), ``"bicubic"``,
            ``"nearest"``, ``"lanczos"``, or on the train split's random-resized crops ``"random"``
            (bilinear or bicubic per crop, timm's). timm's ``create_loader`` takes one for the
            loader as this does; ``train.py`` passes ``--train-interpolation`` to the train loader.
        augment: ``"random_resized_crop"`` (ImageNet's: random-resized crops for train,
            torchvision's resize and center crop for val) or ``"pad_crop"`` (CIFAR's: resize to
            ``crop_size`` if needed, pad 4 pixels with zeros and take a random crop for train;
            the resize alone for val). None picks the dataset's own: ``"pad_crop"`` for CIFAR,
            ``"random_resized_crop"`` for the others.
        adjust_orientation: apply JPEGs' EXIF orientation tags, as ``PIL.ImageOps.exif_transpose``
            would. False (the default) gives torchvision's pixels: PIL ignores the tag.
        channels_last: NHWC memory (the images still index as NCHW).
        dtype: the images' dtype, ``torch.float32`` (None, the default, as torchvision) or
            ``torch.float16`` on the GPU: half the bytes, for a model under autocast
            (AMP), where the first layer casts its input anyway.
        num_threads: DALI CPU worker threads; 0 is taken as 1, so that a script's ``--workers 0``
            (a DataLoader loading in the main process) can be passed as it is.
        seed: the seed of the sample order (``DistributedSampler``'s: epoch ``e`` is shuffled with
            ``seed + e``, the same on every rank) and of the augmentation (drawn per rank from it).
        rank: this process's rank; when None, the initialized torch.distributed process group's,
            else ``$RANK`` (torchrun), else 0 in a world of one (an error in a larger one).
        world_size: the number of ranks; when None, the process group's, else ``$WORLD_SIZE``, else 1.
        local_rank: the GPU to use; ``$LOCAL_RANK`` when None (or the GPU of ``device="cuda:N"``).
        cutmix_alpha: CutMix's Beta(α, α) on the train split; 0 is no CutMix (see :func:`dali_mixup.mixup`).
        cutmix_minmax: None, or ``(lo, hi)``: CutMix box sides uniform in ``[lo, hi)`` of the image's.
        mix_prob: the probability of mixing a batch (a sample, with ``per_sample``) at all (timm's ``prob``).
        switch_prob: with mixup and CutMix both on, the probability of CutMix.
        auto_augment: None, or an automatic augmentation of the train crops by name (see
            ``pipelines.auto_augment``): ``"rand-m9-mstd0.5-inc1"`` and the rest of timm's RandAugment
            grammar (timm's ops, probabilities and magnitude noise), ``"dali-rand-m9-n2"`` (DALI's
            RandAugment), ``"ra"``, ``"ta_wide"``, ``"imagenet"`` (torchvision's names; ``"trivial"``,
            ``"autoaugment"`` too); ``"augmix"`` is refused.
        color_jitter: None (off), or timm's ``color_jitter``: a number (brightness, contrast and
            saturation, no hue) or 3 or 4 of them (the 4th hue), torchvision's ``ColorJitter``; off
            while ``auto_augment`` is on, as timm's (said in a warning). timm's default is 0.4, ours off.
        color_jitter_prob: None (always), or the probability of jittering a crop at all.
        grayscale_prob: the probability of turning a train crop grey (``RandomGrayscale``).
        gaussian_blur_prob: the probability of blurring a train crop (``GaussianBlur(23)``, σ in [0.1, 2]).
        reprob: the probability of random erasing a train crop (timm's ``re_prob``), after it is
            normalized and before it is mixed; then the crops are normalized and mixed with stock
            DALI operators, not the fused one.
        remode: erasing's fill, timm's: ``"const"`` (0 once normalized), ``"rand"`` (a normal colour a
            box) or ``"pixel"`` (normal noise).
        recount: the most boxes erased in a crop (timm's ``re_count``), their number uniform in ``[1, recount]``.
        mean: per-channel mean on the 0-1 scale, as timm's (e.g. ``(0.5, 0.5, 0.5)``); None is the
            dataset's (ImageNet's or CIFAR's). With ``std``.
        std: per-channel standard deviation on the 0-1 scale; None is the dataset's.
        crop_pct: with ``augment="random_resized_crop"``, val's crop as a share of the resize, which is
            ``floor(crop_size / crop_pct)`` (timm's ``crop_pct``); None is 0.875 (224 of 256).
        crop_mode: val's ``"center"`` (shorter side resized, center crop; torchvision's),
            ``"squash"`` (both sides resized, center crop) or ``"border"`` (longer side resized, the
            crop padded with the mean colour), timm's ``crop_mode``.
        resize_size: val's resize size, instead of ``crop_pct``'s (torchvision's ``--val-resize-size``).
        aug_repeats: repeated augmentation (timm's ``--aug-repeats``, torchvision's ``--ra-reps`` with
            ``--ra-sampler``): each train sample ``aug_repeats`` times an epoch, spread over the ranks,
            each copy augmented on its own; the epoch is as long as timm's ``RepeatAugSampler``
            makes it (see ``dali_mixup.epochs``). 0 is off.

    Returns:
        A :class:`DaliLoader`.

    Raises:
        ValueError, TypeError: for a bad option, naming it; for a train split that gives the ranks
            no whole batch, or a val split that cannot give every rank the same number of
            non-empty batches (``dali_mixup.epochs``); FileNotFoundError for missing data;
            ValueError naming the file and line for a label outside ``[0, num_classes)``.
    """
    _check_options(dataset, split, root, file_list)
    device_kind, device_index = _device(device)
    if device_kind is None:
        raise ValueError(f"device must be 'gpu', 'cuda', 'cuda:N', 'cpu' or a torch.device of those, got {device!r}")
    for name, value, minimum in (("batch_size", batch_size, 1), ("num_threads", num_threads, 0), ("seed", seed, 0)):
        _check_int(name, value, minimum)
    num_threads = max(1, num_threads)  # a DataLoader's num_workers=0 (load in this process): one DALI thread
    if num_classes is not None:
        _check_int("num_classes", num_classes, 1)
    if not isinstance(soft_targets, bool):
        raise TypeError(f"soft_targets must be a bool, got {type(soft_targets).__name__} ({soft_targets!r})")
    if not isinstance(channels_last, bool):
        raise TypeError(f"channels_last must be a bool, got {type(channels_last).__name__} ({channels_last!r})")
    rank, world_size, local_rank = _check_distributed(rank, world_size, local_rank, device_kind, device_index)
    image_dtype = _image_dtype(dtype, device_kind)
    training = split == "train"
    mixing = _mixing(split, dict(alpha=mixup_alpha, cutmix_alpha=cutmix_alpha, cutmix_minmax=cutmix_minmax,
                                 prob=mix_prob, switch_prob=switch_prob, per_sample=per_sample, pairs=pairs,
                                 label_smoothing=label_smoothing))
    if mixing.pairs and batch_size % 2:
        raise ValueError(f"pairs=True mixes samples i and batch_size - 1 - i: batch_size must be even, got {batch_size}")
    options = ImageOptions(
        crop_size=crop_size, augment=augment, scale=scale, ratio=ratio, min_crop_area=min_crop_area, hflip=hflip,
        vflip=vflip, interpolation=interpolation, adjust_orientation=adjust_orientation, crop_pct=crop_pct,
        crop_mode=crop_mode, resize_size=resize_size, mean=mean, std=std, auto_augment=auto_augment,
        color_jitter=color_jitter, color_jitter_prob=color_jitter_prob, grayscale_prob=grayscale_prob,
        gaussian_blur_prob=gaussian_blur_prob, reprob=reprob, remode=remode, recount=recount)
    options.check_split(split)
    repeats = _repeats(aug_repeats, training)
    if _source_class(dataset).modality == "audio":
        changed = options.changed() + (["channels_last"] if channels_last else [])
        if changed:
            raise ValueError(f"{', '.join(changed)} apply to image datasets, not dataset={dataset!r} (audio)")

    source = SOURCES[dataset](os.fspath(root), split=split, file_list=file_list, num_classes=num_classes)
    _release_free_memory()  # the scan's temporaries (arrays the size of the file list or the indexes)
    plan = EpochPlan(len(source), training=training, seed=seed, rank=rank, world_size=world_size,
                     batch_size=batch_size, repeats=repeats)
    common = {"device": device_kind, "image_dtype": image_dtype, "batch_size": batch_size, "num_threads": num_threads,
              "device_id": local_rank if device_kind == "gpu" else None}
    if source.modality == "audio":
        pipeline = _speech_pipeline(training)
    else:
        common["channels_last"] = channels_last
        pipeline = _image_pipeline(source, training, options)
    # Mixed or smoothed targets are soft whatever is asked; the others only on request.
    soft = soft_targets or mixing.mixes or mixing.label_smoothing > 0

    def make_pipeline(feed, mixing_enabled, pipeline_seed, checkpoint):
        # Checkpointing on: DALI keeps its random operators' states, for state_dict (its cost: within the
        # noise, 1-3%, in benchmarks.loader here).
        restore = {"seed": pipeline_seed, "enable_checkpointing": True, "checkpoint": checkpoint}
        if not training:
            return pipeline(feed, **restore, **common)
        unmixed = Mixing(label_smoothing=mixing.label_smoothing)
        return pipeline(feed, mixing=mixing if mixing_enabled else unmixed, soft_targets=soft, **restore, **common)

    return DaliLoader(make_pipeline, Feed(source, plan), training=training, mixes=mixing.mixes,
                      channels_last=channels_last, seed=seed, rank=rank)
