"""The models: torchvision's ImageNet ResNets, and the paper's 32x32 networks.

PreAct ResNet-18 and WideResNet-28-10 follow the CIFAR setups in Zhang et al. (2018), who use
the PreAct ResNet of He et al. (2016) and the WRN of Zagoruyko and Komodakis (2016); ``resnet8``
is a small CIFAR-style ResNet for the demo.
"""

import torch.nn.functional as F
import torchvision
from torch import nn

IMAGENET_MODELS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnext50_32x4d", "resnext101_32x8d")
SMALL_MODELS = ("preact_resnet18", "wrn28_10", "resnet8")
MODELS = IMAGENET_MODELS + SMALL_MODELS


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


def create_model(name, num_classes, dropout=0.0):
    """A model by name.

    Args:
        name: one of ``MODELS``.
        num_classes: outputs.
        dropout: dropout inside the blocks of the 32x32 networks; the torchvision models take none.
    """
    if name not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {name!r}")
    if name in IMAGENET_MODELS:
        if dropout:
            raise ValueError(f"dropout applies to {SMALL_MODELS} only, not {name}")
        return getattr(torchvision.models, name)(num_classes=num_classes)
    if name == "preact_resnet18":
        return PreActResNet([64, 128, 256, 512], [2, 2, 2, 2], num_classes, dropout)
    if name == "wrn28_10":  # (28 - 4) / 6 = 4 blocks per stage, widths 16k with k = 10
        return PreActResNet([160, 320, 640], [4, 4, 4], num_classes, dropout, stem=16)
    return PreActResNet([16, 32, 64], [1, 1, 1], num_classes, dropout)
