"""Make small datasets from real photos, for tests, demos and benchmarks.

    python -m dali_mixup.datasets imagenet-like OUT --classes N --per-class M [--val-per-class K]
    python -m dali_mixup.datasets cifar10-like OUT [--per-class M] [--test-per-class K]
    python -m dali_mixup.datasets cifar100-like OUT [--per-class M] [--test-per-class K]
    python -m dali_mixup.datasets shards IMAGEFOLDER OUT [--per-shard N]
    python -m dali_mixup.datasets digits OUT
    python -m dali_mixup.datasets spoken-words OUT [--per-word N] [--seed S]

The ImageNet- and CIFAR-like images are random crops, scales and flips of the photos shipped in
scikit-image and scikit-learn (class k uses photo k modulo their number), deterministic by
``--seed``; ``digits`` is scikit-learn's handwritten digits, the demo's dataset.
"""

import argparse
import io
import os
import tarfile

import numpy as np
from PIL import Image

from dali_mixup import formats
from dali_mixup.cifar import write_cifar
from dali_mixup.photos import COLOR_PHOTOS, GRAY_PHOTOS, photo

SOURCES = COLOR_PHOTOS + GRAY_PHOTOS
# ImageNet's train images average about 500x375 (4:3 landscape).
_MEAN_SIZE = (500, 375)


def _class_source(label):
    """The photo behind class ``label``, turned by a multiple of 90 degrees once the photos run out."""
    name = SOURCES[label % len(SOURCES)]
    return name, np.rot90(photo(name), k=label // len(SOURCES))


def _random_view(image, size, rng):
    """A random crop of ``image`` with the aspect of ``size`` (w, h), scaled to ``size``, maybe flipped."""
    height, width = image.shape[:2]
    aspect = size[0] / size[1]
    area = rng.uniform(0.35, 1.0) * height * width
    crop_w = int(min(width, round(np.sqrt(area * aspect))))
    crop_h = int(min(height, round(crop_w / aspect)))
    y = rng.integers(0, height - crop_h + 1)
    x = rng.integers(0, width - crop_w + 1)
    view = Image.fromarray(np.ascontiguousarray(image[y : y + crop_h, x : x + crop_w]))
    view = view.resize(size, Image.BILINEAR)
    if rng.random() < 0.5:
        view = view.transpose(Image.FLIP_LEFT_RIGHT)
    return view


def imagenet_like_image(label, index, seed):
    """JPEG bytes of image ``index`` of class ``label``: about 500x375 on average, quality 75-95."""
    rng = np.random.default_rng([seed, label, index])
    scale = rng.uniform(0.7, 1.3)
    size = (round(_MEAN_SIZE[0] * scale), round(_MEAN_SIZE[1] * scale * rng.uniform(0.75, 1.25)))
    _, image = _class_source(label)
    out = io.BytesIO()
    _random_view(image, size, rng).save(out, format="JPEG", quality=int(rng.integers(75, 96)))
    return out.getvalue()


def write_imagenet_like(out, classes, per_class, seed=0, start=0):
    """Write an ImageFolder ``out/NNNN_photo/NNNNNN.JPEG``; ``start`` offsets the image indices (for a val split)."""
    if classes < 1 or per_class < 1:
        raise ValueError(f"classes and per_class must be >= 1, got {classes} and {per_class}")
    for label in range(classes):
        folder = os.path.join(out, f"{label:04d}_{SOURCES[label % len(SOURCES)]}")
        os.makedirs(folder, exist_ok=True)
        for index in range(start, start + per_class):
            with open(os.path.join(folder, f"{index:06d}.JPEG"), "wb") as f:
                f.write(imagenet_like_image(label, index, seed))


def cifar_like_arrays(classes, per_class, seed, start=0):
    """uint8 ``[classes * per_class, 32, 32, 3]`` views of the photos, and their labels."""
    images, labels = [], []
    for label in range(classes):
        _, image = _class_source(label)
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        for index in range(start, start + per_class):
            rng = np.random.default_rng([seed, label, index])
            images.append(np.asarray(_random_view(image, (32, 32), rng)))
            labels.append(label)
    order = np.random.default_rng([seed, start]).permutation(len(images))
    return np.stack(images)[order], np.asarray(labels, dtype=np.int64)[order]


def write_cifar_like(out, name, per_class, test_per_class, seed=0):
    """Write a CIFAR-like set in both official layouts (see :func:`dali_mixup.cifar.write_cifar`)."""
    classes = 10 if name == "cifar10" else 100
    train = cifar_like_arrays(classes, per_class, seed)
    test = cifar_like_arrays(classes, test_per_class, seed, start=per_class)
    class_names = [f"{k:03d}_{_class_source(k)[0]}" for k in range(classes)]
    write_cifar(out, name, train, test, class_names)


def write_digits(out, val_every=5):
    """scikit-learn's 1,797 real handwritten digits as 32x32 RGB JPEGs in ``out/train`` and ``out/val``.

    Every ``val_every``-th digit goes to val (360 of them), the rest to train (1,437): a fixed split.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    for index, (image, label) in enumerate(zip(digits.images, digits.target)):
        split = "val" if index % val_every == 0 else "train"
        folder = os.path.join(out, split, str(label))
        os.makedirs(folder, exist_ok=True)
        pixels = np.round(image * (255 / 16)).astype(np.uint8)  # 17 gray levels, 0..16
        Image.fromarray(pixels).convert("RGB").resize((32, 32), Image.BICUBIC).save(
            os.path.join(folder, f"{index:04d}.jpg"), quality=95
        )


def pack_shards(files, labels, out, per_shard):
    """Pack images into webdataset tar shards (``KEY.jpg`` + ASCII ``KEY.cls``) and write their index and label files.

    Samples are shuffled by a fixed seed before packing, so that each shard holds a mix of
    classes; the key is the sample's position in ``files``.

    Returns:
        The shard paths.
    """
    from dali_mixup.index_shards import index_shard

    order = np.random.default_rng(0).permutation(len(files))
    os.makedirs(out, exist_ok=True)
    paths = []
    for shard, begin in enumerate(range(0, len(files), per_shard)):
        path = os.path.join(out, f"shard-{shard:06d}.tar")
        with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
            for key in order[begin : begin + per_shard]:
                ext = os.path.splitext(files[key])[1].lstrip(".").lower()
                with open(files[key], "rb") as f:
                    image = f.read()
                for member, data in (
                    (f"{key:08d}.{'jpg' if ext == 'jpeg' else ext}", image),
                    (f"{key:08d}.cls", str(labels[key]).encode()),
                ):
                    info = tarfile.TarInfo(member)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        index_shard(path)
        paths.append(path)
    return paths


def write_shards(image_folder, out, per_shard):
    """Pack an ImageFolder into shards with :func:`pack_shards`; returns the shard paths."""
    files, labels, _ = formats.image_folder(image_folder)
    return pack_shards(files, labels, out, per_shard)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    imagenet = commands.add_parser("imagenet-like", help="an ImageFolder of ~500x375 JPEGs")
    imagenet.add_argument("out")
    imagenet.add_argument("--classes", type=int, default=10)
    imagenet.add_argument("--per-class", type=int, default=20)
    imagenet.add_argument(
        "--val-per-class", type=int, default=0, help="if > 0, write OUT/train and OUT/val (default: OUT only)"
    )
    imagenet.add_argument("--seed", type=int, default=0)
    for name in ("cifar10", "cifar100"):
        cifar = commands.add_parser(f"{name}-like", help=f"{name} in both official layouts")
        cifar.add_argument("out")
        cifar.add_argument("--per-class", type=int, default=50)
        cifar.add_argument("--test-per-class", type=int, default=10)
        cifar.add_argument("--seed", type=int, default=0)
    shards = commands.add_parser("shards", help="pack an ImageFolder into webdataset tar shards")
    shards.add_argument("image_folder")
    shards.add_argument("out")
    shards.add_argument("--per-shard", type=int, default=1000)
    digits = commands.add_parser("digits", help="scikit-learn's handwritten digits, 32x32, train/ and val/")
    digits.add_argument("out")
    spoken = commands.add_parser("spoken-words", help="Speech Commands-like 1 s WAVs of synthesized speech")
    spoken.add_argument("out")
    spoken.add_argument("--per-word", type=int, default=30)
    spoken.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    for name in ("classes", "per_class", "per_shard", "per_word", "test_per_class"):
        if getattr(args, name, 1) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.command == "imagenet-like":
        if args.val_per_class < 0:
            parser.error(f"--val-per-class must be >= 0, got {args.val_per_class}")
        if args.val_per_class:
            write_imagenet_like(os.path.join(args.out, "train"), args.classes, args.per_class, args.seed)
            write_imagenet_like(
                os.path.join(args.out, "val"), args.classes, args.val_per_class, args.seed, start=args.per_class
            )
        else:
            write_imagenet_like(args.out, args.classes, args.per_class, args.seed)
    elif args.command == "digits":
        write_digits(args.out)
    elif args.command == "spoken-words":
        from dali_mixup.spoken_words import write_spoken_words

        try:
            splits = write_spoken_words(args.out, args.per_word, args.seed)
        except ValueError as err:  # a negative seed, an OUT that is not empty
            parser.error(str(err))
        print(f"wrote {sum(map(len, splits.values()))} clips to {args.out}: "
              + ", ".join(f"{len(paths)} {split}" for split, paths in splits.items()))
        return
    elif args.command == "shards":
        paths = write_shards(args.image_folder, args.out, args.per_shard)
        print(f"wrote {len(paths)} shard(s) with index files to {args.out}")
        return
    else:
        write_cifar_like(args.out, args.command[: -len("-like")], args.per_class, args.test_per_class, args.seed)
    print(f"wrote {args.command} data to {args.out}")


if __name__ == "__main__":
    main()
