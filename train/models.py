"""The models: the paper's 32x32 and speech networks, and any torchvision or timm classification model by name.

PreAct ResNet-18 and WideResNet-28-10 follow the CIFAR setups in Zhang et al. (2018), who use
the PreAct ResNet of He et al. (2016) and the WRN of Zagoruyko and Komodakis (2016); ``resnet8``
is a small CIFAR-style ResNet for the demo. The speech models are those of the public
Google-commands code (adiyoss/GCommandsPytorch, ``model.py``) that the paper's section 3.3 matches.
"""

import torch.nn.functional as F
import torchvision
from torch import nn

SMALL_MODELS = ("preact_resnet18", "wrn28_10", "resnet8")
SPEECH_MODELS = ("lenet_speech", "vgg11_speech")


class PreActBlock(nn.Module):
    """BN-ReLU-conv twice, with optional dropout between the convs (the paper's section 3.4)."""

    def __init__(self, in_planes, planes, stride, dropout=0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.shortcut = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride, bias=False)

    def forward(self, x):
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.dropout(F.relu(self.bn2(out)))
        return self.conv2(out) + shortcut


class PreActResNet(nn.Module):
    """A pre-activation ResNet for 32x32 inputs: ``widths[k]`` channels and ``depths[k]`` blocks per stage.

    Args:
        widths: channels of each stage; the stem has ``widths[0]``.
        depths: blocks per stage.
        num_classes: outputs.
        dropout: dropout rate inside each block (0 turns it off).
    """

    def __init__(self, widths, depths, num_classes, dropout=0.0, stem=None):
        super().__init__()
        stem = stem or widths[0]
        self.conv = nn.Conv2d(3, stem, 3, 1, 1, bias=False)
        blocks, in_planes = [], stem
        for stage, (width, depth) in enumerate(zip(widths, depths)):
            for k in range(depth):
                blocks.append(PreActBlock(in_planes, width, 2 if stage > 0 and k == 0 else 1, dropout))
                in_planes = width
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(in_planes)
        self.fc = nn.Linear(in_planes, num_classes)

    def forward(self, x):
        x = self.blocks(self.conv(x))
        x = F.adaptive_avg_pool2d(F.relu(self.bn(x)), 1).flatten(1)
        return self.fc(x)


class LeNetSpeech(nn.Module):
    """GCommandsPytorch's LeNet for ``[B, 1, 161, 101]`` spectrograms (160 rows fit too): two 5x5 convs of
    20 channels, each max-pooled, channel dropout after the second, then fc 16,280 -> 1,000 -> classes."""

    def __init__(self, num_classes):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, kernel_size=5)
        self.conv2 = nn.Conv2d(20, 20, kernel_size=5)
        self.conv2_drop = nn.Dropout2d()
        self.fc1 = nn.Linear(16280, 1000)
        self.fc2 = nn.Linear(1000, num_classes)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
        x = F.dropout(F.relu(self.fc1(x.flatten(1))), training=self.training)
        return self.fc2(x)  # logits: the reference's log_softmax is in the loss here


class VGGSpeech(nn.Module):
    """GCommandsPytorch's VGG-11 for ``[B, 1, 161, 101]`` spectrograms: 3x3 conv + BN + ReLU stages
    [64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M], then fc 7,680 -> 512 -> classes."""

    LAYERS = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")

    def __init__(self, num_classes):
        super().__init__()
        layers, in_channels = [], 1
        for width in self.LAYERS:
            if width == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
                in_channels = width
        self.features = nn.Sequential(*layers)
        self.fc1 = nn.Linear(7680, 512)
        self.fc2 = nn.Linear(512, num_classes)

    def forward(self, x):
        return self.fc2(self.fc1(self.features(x).flatten(1)))  # no ReLU between them, as in the reference


def resolve_model(name):
    """Where a model name comes from: ``"ours"`` (the 32x32 networks), ``"torchvision"`` or ``"timm"``,
    looked up in that order; ``timm:NAME`` asks for timm's where both have one (``timm:resnet50``).

    Raises:
        ValueError: naming where it looked, if no one has it.
    """
    if name in SMALL_MODELS + SPEECH_MODELS:
        return "ours"
    if not name.startswith("timm:") and name in torchvision.models.list_models(module=torchvision.models):
        return "torchvision"
    try:
        import timm
    except ImportError:
        timm = None
    if timm is not None and timm.is_model(name.removeprefix("timm:")):
        return "timm"
    where = "torchvision's classification models" + (", timm's models" if timm else " (timm is not installed)")
    raise ValueError(f"no model {name!r} among {', '.join(SMALL_MODELS + SPEECH_MODELS)}, {where}")


def create_model(name, num_classes, dropout=0.0, drop_path=0.0):
    """A model by name, untrained: one of ours, a torchvision classification model, or a timm model.

    Args:
        name: see :func:`resolve_model`.
        num_classes: outputs.
        dropout: dropout inside the blocks of the 32x32 networks; the others take none.
        drop_path: stochastic depth of a timm model (its ``drop_path_rate``); the others take none.
    """
    origin = resolve_model(name)
    if drop_path and origin != "timm":
        raise ValueError(f"drop_path applies to timm models, not {name} ({origin}'s)")
    if origin != "ours":
        if dropout:
            raise ValueError(f"dropout applies to {SMALL_MODELS} only, not {name}")
        if origin == "torchvision":
            return torchvision.models.get_model(name, weights=None, num_classes=num_classes)
        import timm

        extra = {"drop_path_rate": drop_path} if drop_path else {}
        return timm.create_model(name.removeprefix("timm:"), pretrained=False, num_classes=num_classes, **extra)
    if name in SPEECH_MODELS:
        if dropout:
            raise ValueError(f"dropout applies to {SMALL_MODELS} only, not {name} (LeNet has its own)")
        return (LeNetSpeech if name == "lenet_speech" else VGGSpeech)(num_classes)
    if name == "preact_resnet18":
        return PreActResNet([64, 128, 256, 512], [2, 2, 2, 2], num_classes, dropout)
    if name == "wrn28_10":  # (28 - 4) / 6 = 4 blocks per stage, widths 16k with k = 10
        return PreActResNet([160, 320, 640], [4, 4, 4], num_classes, dropout, stem=16)
    return PreActResNet([16, 32, 64], [1, 1, 1], num_classes, dropout)
