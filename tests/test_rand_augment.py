"""timm's RandAugment in the graph, against timm's own on the same inputs: the draws (which op, whether it
is applied, its magnitude and sign) by chi-square and Kolmogorov-Smirnov tests at the level ALPHA with
the seeds fixed, each op's pixels at a fixed magnitude, and the whole policy's pixels."""

import random

import numpy as np
import pytest
from nvidia.dali import fn, pipeline_def, types
from PIL import Image
from scipy import stats

from conftest import DEVICES
from helpers import MEAN, photo_crops
from pipelines.auto_augment import TIMM_OPS, AutoAugment, timm_suite

timm_aa = pytest.importorskip("timm.data.auto_augment")

ALPHA = 1e-3  # each test's level; the seeds are fixed, so a pass is a pass every run
DRAWS = 3000  # per layer
FILL = round(sum(MEAN) / 3)
# The ops whose parameter comes from the magnitude (the others, AutoContrast, Equalize, Invert, take none).
LEVELLED = [name for name in TIMM_OPS if name not in ("AutoContrast", "Equalize", "Invert")]
SIGNED = ("Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")


@pipeline_def(batch_size=DRAWS, num_threads=2, device_id=None, seed=3)
def draws_pipeline(policy):
    outputs = []
    for _ in range(policy.layers):
        outputs.extend(policy.layer_draws())
    return tuple(outputs)


def ours(name):
    """Every layer's ``(op, applied, level, sign)`` for DRAWS crops, as numpy arrays (layers concatenated)."""
    policy = AutoAugment(name).parsed()[1]
    pipe = draws_pipeline(policy)
    pipe.build()
    outputs = [out.as_array() for out in pipe.run()]
    op, applied, level, sign = (np.concatenate(outputs[k::4]) for k in range(4))
    return {"op": op, "applied": applied.astype(bool), "level": level, "sign": sign}


def timms(name):
    """The same draws from timm's ``rand_augment_transform`` (its ops instrumented, their pixels left alone)."""
    random.seed(0)
    np.random.seed(0)
    transform = timm_aa.rand_augment_transform(name, {})
    records = []

    class Chosen:
        def __init__(self, op):
            self.op = op
            self.index = TIMM_OPS.index(op.name.replace("Increasing", ""))
            original = op.level_fn

            def level_fn(magnitude, hparams):
                args = original(magnitude, hparams)
                records[-1].update(applied=True, level=magnitude, sign=float(np.sign(args[0])) if args else 1.0)
                return args

            op.level_fn = level_fn if original is not None else None
            op.aug_fn = self.applied

        def applied(self, img, *args, **kwargs):
            records[-1]["applied"] = True
            return img

        def __call__(self, img):
            records.append({"op": self.index, "applied": False, "level": np.nan, "sign": np.nan})
            return self.op(img)

    transform.ops = [Chosen(op) for op in transform.ops]
    image = Image.new("RGB", (8, 8))
    for _ in range(DRAWS):
        transform(image)
    return {key: np.array([r[key] for r in records]) for key in ("op", "applied", "level", "sign")}


def _chi2_same(counts_a, counts_b):
    table = np.array([counts_a, counts_b])
    table = table[:, table.sum(0) > 0]
    return stats.chi2_contingency(table).pvalue


NAMES = ["rand-m9-mstd0.5-inc1", "rand-m7-mstd0.5", "rand-m6-n3-p0.8-mstd2-mmax8", "rand-m9-mstd101", "rand-m5"]


@pytest.mark.parametrize("name", NAMES)
def test_the_draws_follow_timms_laws(name):
    a, b = ours(name), timms(name)
    increasing = "inc1" in name
    names = [timm_aa._RAND_INCREASING_TRANSFORMS if increasing else timm_aa._RAND_TRANSFORMS][0]
    assert [n.replace("Increasing", "") for n in names] == list(TIMM_OPS)
    assert len(a["op"]) == len(b["op"])  # n layers x DRAWS crops on both sides
    # Which op each layer picks: uniform over the 15, with replacement, on both sides.
    count = lambda ops: np.bincount(ops, minlength=len(TIMM_OPS))  # noqa: E731
    assert _chi2_same(count(a["op"]), count(b["op"])) > ALPHA
    assert stats.chisquare(count(a["op"])).pvalue > ALPHA
    # Whether it is applied: p.
    applied = lambda d: [d["applied"].sum(), (~d["applied"]).sum()]  # noqa: E731
    assert _chi2_same(applied(a), applied(b)) > ALPHA
    # The magnitude of the applied, levelled ops, as a whole and op by op.
    levelled = [TIMM_OPS.index(n) for n in LEVELLED]
    mine = a["applied"] & np.isin(a["op"], levelled)
    theirs = b["applied"] & np.isin(b["op"], levelled)
    if "mstd" not in name:  # no noise: every magnitude is M
        m = float(name.split("-m")[1].split("-")[0])
        assert (a["level"][mine] == m).all() and (b["level"][theirs] == m).all()
    else:
        assert stats.ks_2samp(a["level"][mine], b["level"][theirs]).pvalue > ALPHA
        for k in levelled:
            x, y = a["level"][mine & (a["op"] == k)], b["level"][theirs & (b["op"] == k)]
            assert stats.ks_2samp(x, y).pvalue > ALPHA / len(levelled), TIMM_OPS[k]
    # The sign of the signed ops (and of the increasing enhance ops): a fair coin on both sides.
    signed = [TIMM_OPS.index(n) for n in SIGNED]
    mine, theirs = a["applied"] & np.isin(a["op"], signed), b["applied"] & np.isin(b["op"], signed)
    plus = lambda d, m: [(d["sign"][m] > 0).sum(), (d["sign"][m] < 0).sum()]  # noqa: E731
    assert _chi2_same(plus(a, mine), plus(b, theirs)) > ALPHA


def test_the_magnitude_noise_is_clipped_as_timms():
    a = ours("rand-m9-mstd3")
    level = a["level"]
    assert level.min() >= 0 and level.max() <= 10 and (level == 10).mean() > 0.3  # N(9, 3) clipped at 10
    b = ours("rand-m9-mstd3-mmax20")
    assert b["level"].max() > 12


SIZE = 96


@pipeline_def(batch_size=8, num_threads=2, seed=0)
def op_pipeline(images, op, level, sign, device):
    crops = fn.external_source(source=lambda: images, batch=True, layout="HWC")
    if device == "gpu":
        crops = crops.gpu()
    shape = types.Constant(np.array([SIZE, SIZE], np.float32))
    one = fn.cast(fn.random.coin_flip(probability=1.0), dtype=types.FLOAT)  # 1.0 a sample, a node to compute with
    return op(crops, level=one * level, sign=one * sign, shape=shape, fill=float(FILL))


# Each op against timm's at level 7.3 (sign +1; the enhance ops below 5 too), the mean absolute difference
# in pixel values over 8 real photo crops: what was measured, with room. Equalize is OpenCV's formula
# (DALI's fn.equalize), PIL's differs; the enhance and geometric ops differ by their rounding and
# filters. Each bound is well under the op's own change (checked too), so a wrong op fails.
TOLERANCE = {"AutoContrast": 0.6, "Equalize": 8.0, "Invert": 0.01, "Rotate": 2.5, "Posterize": 0.01, "Solarize": 0.01,
             "SolarizeAdd": 0.01, "Color": 0.8, "Contrast": 0.8, "Brightness": 0.8, "Sharpness": 0.8, "ShearX": 2.0,
             "ShearY": 2.0, "TranslateXRel": 4.0, "TranslateYRel": 4.0}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("increasing", [False, True])
@pytest.mark.parametrize("level", [7.3, 2.6])
def test_each_op_matches_timms_pixels(level, increasing, device):
    images, _ = photo_crops(8, size=SIZE, seed=1)
    names = timm_aa._RAND_INCREASING_TRANSFORMS if increasing else timm_aa._RAND_TRANSFORMS
    hparams = {"img_mean": (FILL,) * 3, "interpolation": Image.BILINEAR}
    for k, op in enumerate(timm_suite(increasing)):
        if level < 5 and not names[k].startswith(("Color", "Contrast", "Brightness", "Sharpness")):
            continue  # below 5 only the enhance ops change in kind (a factor under 1)
        pipe = op_pipeline(images, op, level, 1.0, device, device_id=0 if device == "gpu" else None)
        pipe.build()
        mine = pipe.run()[0].as_cpu().as_array().astype(np.float32)
        timm_op = timm_aa.AugmentOp(names[k], prob=1.0, magnitude=level, hparams=hparams)
        timm_op.level_fn = _positive(timm_op.level_fn)
        theirs = np.stack([np.asarray(timm_op(Image.fromarray(image))) for image in images]).astype(np.float32)
        difference = np.abs(mine - theirs).mean()
        change = np.abs(np.stack(images).astype(np.float32) - theirs).mean()
        assert difference < TOLERANCE[names[k].replace("Increasing", "")], (names[k], difference, change)
        if change > 1:  # the op does something here: ours must be far nearer timm's result than the input is
            assert difference < 0.5 * change, (names[k], difference, change)


def _positive(level_fn):
    """timm's level function with the random sign fixed to +."""
    if level_fn is None:
        return None

    def fixed(magnitude, hparams):
        state = random.getstate()
        random.seed(1)  # random.random() > 0.5 negates; seed 1's first draw is 0.134: not negated
        try:
            return level_fn(magnitude, hparams)
        finally:
            random.setstate(state)

    return fixed


@pipeline_def(batch_size=64, num_threads=2, device_id=None, seed=5, enable_conditionals=True)
def policy_pipeline(images, policy):
    crops = fn.external_source(source=lambda: images, batch=True, layout="HWC")
    return policy.apply(crops, SIZE)


def test_the_whole_policy_applies_the_op_it_draws_at_its_magnitude():
    """One layer, always applied, no noise: each output is exactly one of the 15 ops at M (either sign), each op
    being held to timm's pixels above, and the ops come uniformly, as timm's draws do."""
    images, _ = photo_crops(64, size=SIZE, seed=2)
    pipe = policy_pipeline(images, AutoAugment("rand-m8-n1-p1.0", mean=(FILL,) * 3))
    pipe.build()
    runs = 6
    outputs = np.concatenate([pipe.run()[0].as_array() for _ in range(runs)]).astype(np.float32)
    candidates = []  # [op][sign] -> the op's outputs for every input
    for op in timm_suite(False):
        per_sign = []
        for sign in (1.0, -1.0):
            single = op_pipeline(images, op, 8.0, sign, "cpu", batch_size=64, device_id=None)
            single.build()
            per_sign.append(single.run()[0].as_array().astype(np.float32))
        candidates.append(per_sign)
    chosen = []
    for i, output in enumerate(outputs):
        distances = [min(np.abs(output - c[i % 64]).mean() for c in per_sign) for per_sign in candidates]
        best = int(np.argmin(distances))
        assert distances[best] == 0, (i, distances)
        chosen.append(best)
    assert not np.array_equal(outputs, np.concatenate([np.stack(images)] * runs))
    assert stats.chisquare(np.bincount(chosen, minlength=15)).pvalue > ALPHA


@pytest.mark.parametrize("name", ["rand", "rand-m9-mstd0.5-inc1", "rand-inc0-n3-m7", "rand-mstd101", "rand-p0.3"])
def test_timms_grammar_is_taken(name):
    policy = AutoAugment(name).parsed()[1]
    timm_policy = timm_aa.rand_augment_transform(name, {})
    op = timm_policy.ops[0]
    assert policy.layers == timm_policy.num_layers and policy.magnitude == op.magnitude and policy.prob == op.prob
    assert policy.magnitude_std == op.magnitude_std and policy.magnitude_max == (op.magnitude_max or 10)
    assert policy.increasing == any(o.name.endswith("Increasing") for o in timm_policy.ops)


@pytest.mark.parametrize("name, message", [
    ("rand-m9.5", "m must be an integer, as timm parses it"),
    ("rand-m9-w0", "unknown section 'w0'"),
    ("rand-m9-tweights", "transform sets"),
    ("rand-m9-inc2", "inc must be 0 or 1"),
    ("augmix", "AugMix blends three chains"),
    ("dali-rand-m12", "m must be 0-10"),
    ("v0", "auto_augment must be 'rand-...'"),
])
def test_bad_names_are_refused_with_the_reason(name, message):
    with pytest.raises(ValueError, match=message):
        AutoAugment(name)
