"""Small real-photo batches and pipeline runners shared by the tests."""

import os
import shutil
import wave

import numpy as np
from nvidia.dali import fn, pipeline_def

from dali_mixup import mixup
from dali_mixup.photos import color_photos
from pipelines.speech import log_spectrogram

MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255
STD = np.array([0.229, 0.224, 0.225], np.float32) * 255


def photo_crops(batch_size, size=24, seed=0):
    """``batch_size`` random ``size``x``size`` crops of the real colour photos: uint8 HWC, and class ids."""
    rng = np.random.default_rng(seed)
    photos = color_photos()
    images, labels = [], []
    for i in range(batch_size):
        label = i % len(photos)
        image = photos[label][1]
        y = rng.integers(0, image.shape[0] - size)
        x = rng.integers(0, image.shape[1] - size)
        images.append(np.ascontiguousarray(image[y : y + size, x : x + size]))
        labels.append(np.int32(label))
    return images, labels


@pipeline_def
def crops_pipeline(images, labels, flips, device, mixup_args):
    """uint8 HWC crops with their labels and flip flags, flipped, normalized and mixed on ``device``,
    returning the mixing parameters too."""
    crops = fn.external_source(source=lambda: images, batch=True, layout="HWC")
    classes = fn.external_source(source=lambda: labels, batch=True)
    mirror = fn.external_source(source=lambda: flips, batch=True)
    if device == "gpu":
        crops = crops.gpu()
    return mixup(crops, classes, mirror=mirror, mean=list(MEAN), std=list(STD), return_params=True, **mixup_args)


@pipeline_def
def fixed_batch_mixup(host_images, host_labels, device, mixup_args):
    """Feed the same host batch every iteration and mix it on ``device``."""
    images = fn.external_source(source=lambda: host_images, batch=True)
    labels = fn.external_source(source=lambda: host_labels, batch=True)
    if device == "gpu":
        images = images.gpu()
    return mixup(images, labels, **mixup_args)


def run_mixup(images, labels, device, iterations=1, seed=7, **mixup_args):
    """Outputs of ``iterations`` runs, each a tuple of numpy arrays."""
    pipe = fixed_batch_mixup(
        images,
        labels,
        device,
        mixup_args,
        batch_size=len(images),
        num_threads=2,
        device_id=0 if device == "gpu" else None,
        seed=seed,
    )
    pipe.build()
    return [tuple(out.as_cpu().as_array() for out in pipe.run()) for _ in range(iterations)]


# The val pipeline against torchvision's PIL eval transform, per image, as the mean absolute
# difference in normalized units, where the pixels come from another resize (DALI's fn.resize, in
# timm's border mode and the composed fallback): measured 0.0024 on average and 0.0033 at most. A
# resize without antialiasing would differ by 0.0117 and bicubic by 0.0135.
VAL_MEAN_TOLERANCE, VAL_MAX_TOLERANCE = 0.005, 0.008
# Where the fused operator resizes, it is Pillow's arithmetic and DALI's CPU JPEG decoder gives PIL's
# pixels: every value equals torchvision's to float rounding (measured 4.8e-7 at most).
EXACT = 1e-5


def assert_exact(images, expected):
    """Every value of ``images`` is ``expected``'s to float rounding (``EXACT``)."""
    difference = (images.float() - expected).abs().max()
    assert difference < EXACT, difference


def assert_matches_torchvision_val(images, files, crop_size=224):
    """``images`` (NCHW, normalized) are torchvision's eval transform of ``files``, to float rounding."""
    assert_exact(images, torchvision_val(files, crop_size))


def torchvision_val(files, crop_size=224):
    """torchvision's ImageNet eval reference on PIL: Resize(crop / 0.875), CenterCrop, ToTensor, Normalize."""
    import torch
    from PIL import Image
    from torchvision import transforms

    transform = transforms.Compose(
        [
            transforms.Resize(round(crop_size / 0.875)),
            transforms.CenterCrop(crop_size),
            transforms.ToTensor(),
            transforms.Normalize(MEAN / 255, STD / 255),
        ]
    )
    return torch.stack([transform(Image.open(file).convert("RGB")) for file in files])


def collect(loader):
    """All batches of one epoch as two concatenated tensors, on the CPU."""
    import torch

    images, targets = zip(*[(x.cpu(), y.cpu()) for x, y in loader])
    return torch.cat(images), torch.cat(targets)


def write_pcm(path, samples, rate=16000):
    """16-bit PCM WAV of ``[N]`` or ``[N, channels]`` floats at any rate."""
    samples = np.asarray(samples).reshape(len(samples), -1)
    with wave.open(str(path), "wb") as f:
        f.setnchannels(samples.shape[1])
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(np.round(np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())


def spectrograms(files, device):
    """``pipelines.speech.log_spectrogram`` of ``files`` in one batch, as NumPy arrays."""

    @pipeline_def(batch_size=len(files), num_threads=1, device_id=0 if device == "gpu" else None)
    def pipe():
        encoded, _ = fn.readers.file(files=[str(f) for f in files])
        return log_spectrogram(encoded, device)

    p = pipe()
    p.build()
    (out,) = p.run()
    out = out.as_cpu() if device == "gpu" else out
    return [np.array(out.at(k)) for k in range(len(files))]


# The formats of write_id_sets, one per source.
ID_SOURCES = ("imagefolder", "filelist", "webdataset", "cifar100", "speechcommands")


def write_id_sets(root, n, imagenet_dir, spoken_root, split):
    """``{dataset: make_loader kwargs}``: ``n`` samples labelled 0..n-1 in every format, as the ``split`` split."""
    from dali_mixup import formats
    from dali_mixup.cifar import write_cifar
    from dali_mixup.datasets import cifar_like_arrays, pack_shards

    jpegs = [*formats.image_folder(str(imagenet_dir / "train"))[0], *formats.image_folder(str(imagenet_dir / "val"))[0]]
    clips = sorted(str(p) for p in spoken_root.glob("*/*.wav") if p.parent.name != "_background_noise_")
    files = [jpegs[k % len(jpegs)] for k in range(n)]
    for k, file in enumerate(files):  # ImageFolder: one class folder per sample
        os.makedirs(root / "folder" / f"{k:04d}")
        os.link(file, root / "folder" / f"{k:04d}" / "image.JPEG")
    (root / "list.txt").write_text("".join(f"{file} {k}\n" for k, file in enumerate(files)))
    pack_shards(files, list(range(n)), str(root / "shards"), per_shard=10)
    images, _ = cifar_like_arrays(100, 1, seed=0)
    write_cifar(str(root / "cifar"), "cifar100", (images[:n], np.arange(n)), (images[:n], np.arange(n)),
                [str(k) for k in range(100)])
    speech = root / "speech"
    listed = []
    for k in range(n):  # Speech Commands: one word folder per clip
        os.makedirs(speech / f"w{k:04d}")
        shutil.copy(clips[k % len(clips)], speech / f"w{k:04d}" / "0000abcd_nohash_0.wav")
        listed.append(f"w{k:04d}/0000abcd_nohash_0.wav")
    (speech / "validation_list.txt").write_text("".join(f"{clip}\n" for clip in listed) if split == "val" else "")
    (speech / "testing_list.txt").write_text("")
    return {
        "imagefolder": {"root": root / "folder"},
        "filelist": {"root": "/", "file_list": root / "list.txt"},
        "webdataset": {"root": root / "shards"},
        "cifar100": {"root": root / "cifar"},
        "speechcommands": {"root": speech},
    }
