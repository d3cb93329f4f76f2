"""Real photographs that ship inside scikit-image and scikit-learn, for tests, demos and datasets."""

import functools

import numpy as np

# Colour photos, one class each, in a fixed order (the class id is the index).
COLOR_PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "motorcycle",
    "retina",
    "hubble",
    "immunohistochemistry",
    "china",
    "flower",
)
# Grayscale photos, for the single-channel cases.
GRAY_PHOTOS = ("camera", "moon", "coins", "brick", "grass", "gravel")


def _load(name):
    import skimage.data
    import sklearn.datasets

    loaders = {
        "astronaut": skimage.data.astronaut,
        "chelsea": skimage.data.chelsea,
        "coffee": skimage.data.coffee,
        "rocket": skimage.data.rocket,
        "motorcycle": lambda: skimage.data.stereo_motorcycle()[0],
        "retina": skimage.data.retina,
        "hubble": skimage.data.hubble_deep_field,
        "immunohistochemistry": skimage.data.immunohistochemistry,
        "china": lambda: sklearn.datasets.load_sample_image("china.jpg"),
        "flower": lambda: sklearn.datasets.load_sample_image("flower.jpg"),
        "camera": skimage.data.camera,
        "moon": skimage.data.moon,
        "coins": skimage.data.coins,
        "brick": skimage.data.brick,
        "grass": skimage.data.grass,
        "gravel": skimage.data.gravel,
    }
    if name not in loaders:
        raise ValueError(f"unknown photo {name!r}; expected one of {sorted(loaders)}")
    return loaders[name]()


@functools.lru_cache(maxsize=None)
def photo(name):
    """One photo as a read-only uint8 array: ``HxWx3`` for colour photos, ``HxW`` for gray ones.

    Args:
        name: one of ``COLOR_PHOTOS`` or ``GRAY_PHOTOS``.
    """
    image = np.ascontiguousarray(_load(name), dtype=np.uint8)
    if image.ndim == 3 and image.shape[2] == 4:  # drop an alpha channel
        image = np.ascontiguousarray(image[:, :, :3])
    image.setflags(write=False)
    return image


def color_photos():
    """All colour photos as a list of ``(name, HxWx3 uint8 array)``, in class order."""
    return [(name, photo(name)) for name in COLOR_PHOTOS]
