"""The documentation cannot rot: every Python block of README.md and docs/*.md runs, on the CPU and the
embedded data, and every link between the pages leads to a file and a heading that exist.

A block runs as it is written but for ``SUBSTITUTIONS`` (the GPU for the CPU, ImageNet's paths for the
dataset maker's ImageNet-like folder, small sizes), after a prelude: by default a tiny model and one
epoch for the loops that leave them out; a block that shows lines of someone else's script says which
(``<!-- docs-test: NAME -->`` just before it), and ``PRELUDES[NAME]`` defines what that script would have
defined before those lines.
"""

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = ["README.md"] + sorted(os.path.join("docs", name) for name in os.listdir(os.path.join(ROOT, "docs"))
                               if name.endswith(".md"))

# What turns a GPU and ImageNet example into one that runs here in seconds ({root}: train/ and val/ of the
# dataset maker's ImageNet-like images, 4 classes).
SUBSTITUTIONS = [
    ("/data/imagenet", "{root}"),
    ('device="gpu"', 'device="cpu"'),
    ('device="mixed"', 'device="cpu"'),
    ('"cuda"', '"cpu"'),
    ("device_id=0", "device_id=None"),
    ("batch_size=256", "batch_size=4"),
    ("num_threads=8", "num_threads=2"),
    ("range(90)", "range(1)"),
    ("resnet50", "resnet18"),
]
_DEFAULT = """
import torch
epochs = 1
model = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 4))
"""
PRELUDES = {
    "": _DEFAULT,
    # torchvision's references/classification/train.py, in main() just before the lines shown
    "torchvision-reference": """
import os
from types import SimpleNamespace
from dali_mixup import make_loader
args = SimpleNamespace(batch_size=4, device="cpu", workers=1, train_crop_size=32, val_crop_size=32, val_resize_size=36,
                       mixup_alpha=0.2, cutmix_alpha=1.0)
train_dir, val_dir = os.path.join("{root}", "train"), os.path.join("{root}", "val")
""",
    # timm's train.py, in main() just before the lines shown
    "timm-train": """
import os
from types import SimpleNamespace
from dali_mixup import make_loader
args = SimpleNamespace(data_dir="{root}", train_split="train", val_split="val", batch_size=4,
                       validation_batch_size=None, workers=1, mixup=0.2, cutmix=1.0, cutmix_minmax=None, mixup_prob=1.0,
                       mixup_switch_prob=0.5, smoothing=0.1, seed=0, scale=(0.08, 1.0), hflip=0.5, reprob=0.25)
data_config = {{"input_size": (3, 32, 32), "crop_pct": 0.875}}
device, mixup_active = "cpu", True
""",
}
_FENCE = re.compile(r"(?:<!-- docs-test: (?P<context>[\w-]+) -->\n)?```python\n(?P<code>.*?)\n```", re.S)


def python_blocks(path):
    """``[(line, context, code)]``: the Python blocks of a Markdown file, with the line each starts on."""
    with open(os.path.join(ROOT, path)) as f:
        text = f.read()
    return [(text.count("\n", 0, match.start("code")), match.group("context") or "", match.group("code"))
            for match in _FENCE.finditer(text)]


def runnable(context, code, root):
    """The block as it runs here: its prelude, then its code with the substitutions."""
    for old, new in SUBSTITUTIONS:
        code = code.replace(old, new)
    return PRELUDES[context].replace("{root}", str(root)).replace("{{", "{").replace("}}", "}") + code.replace(
        "{root}", str(root))


def run_block(context, code, root):
    """``(returncode, output)`` of the block run in a fresh interpreter from the repository's root."""
    result = subprocess.run([sys.executable, "-c", runnable(context, code, root)], cwd=ROOT, capture_output=True,
                            text=True, timeout=600)
    return result.returncode, result.stdout + result.stderr


BLOCKS = [(path, line, context, code) for path in PAGES for line, context, code in python_blocks(path)]


@pytest.mark.parametrize("path, line, context, code", BLOCKS, ids=[f"{b[0]}:{b[1]}" for b in BLOCKS])
def test_every_python_block_runs(path, line, context, code, imagenet_dir):
    returncode, output = run_block(context, code, imagenet_dir)
    assert returncode == 0, f"{path}:{line}\n{output[-3000:]}"


def test_the_pages_have_python_blocks_and_each_is_collected():
    assert {path for path, *_ in BLOCKS} >= {"README.md", "docs/operator.md", "docs/loader.md"}
    for path in PAGES:  # a block the pattern missed (a typo in its fence or its comment) would go unrun
        with open(os.path.join(ROOT, path)) as f:
            assert f.read().count("```python\n") == len(python_blocks(path)), path


def test_a_broken_example_fails(imagenet_dir):
    """The runner is not a rubber stamp: an example with an option make_loader does not take fails."""
    code = 'from dali_mixup import make_loader\nmake_loader(dataset="imagefolder", root="/data/imagenet/train", ' \
           'device="gpu", mixup_alfa=0.2)\n'
    returncode, output = run_block("", code, imagenet_dir)
    assert returncode != 0 and "mixup_alfa" in output


def _slug(heading):
    """GitHub's anchor of a heading: lower case, punctuation dropped (but - and _), spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path):
    with open(path) as f:
        text = re.sub(r"```.*?```", "", f.read(), flags=re.S)
    return {_slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, re.M)}


def test_every_link_between_the_pages_leads_somewhere():
    broken = []
    for page in PAGES:
        with open(os.path.join(ROOT, page)) as f:
            text = re.sub(r"```.*?```", "", f.read(), flags=re.S)
        text = re.sub(r"`[^`\n]*`", "", text)  # inline code is shown as written, never a link
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # http(s), mailto: outside the repository
            path, _, anchor = target.partition("#")
            full = os.path.normpath(os.path.join(ROOT, os.path.dirname(page), path)) if path else os.path.join(ROOT, page)
            if not os.path.exists(full):
                broken.append(f"{page}: {target} (no such file)")
            elif anchor and full.endswith(".md") and anchor not in _anchors(full):
                broken.append(f"{page}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_the_readme_is_short_and_links_every_page():
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    assert readme.count("\n") <= 250
    assert all(f"]({page})" in readme for page in PAGES if page != "README.md")
    for page in PAGES[1:]:  # each page says at the top what it covers
        with open(os.path.join(ROOT, page)) as f:
            title, blank, covers = f.read().split("\n")[:3]
        assert title.startswith("# ") and blank == "" and covers.startswith("This page covers"), page
