"""The built-in MNIST networks (1x28x28 in, 10 logits out), by name, and their training settings."""

from __future__ import annotations

import difflib
from typing import Any, Callable, Sequence

import torch
from torch import nn

from .._torch import fork_rng


# --------------------------------------------------------------------------- built-in MNIST networks


def _conv_block(cin: int, cout: int, stride: int, batch_norm: bool) -> list[nn.Module]:
    """conv3x3 (+ BatchNorm) + ReLU, as in torchvision's ``vgg*_bn``."""
    if batch_norm:
        return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout),
                nn.ReLU(inplace=False)]
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.ReLU(inplace=False)]


class MnistVGG(nn.Module):
    """VGG-style MNIST net: (conv3-BN-ReLU x 2, maxpool) x 2, then a 2-layer classifier.

    Layer names follow torchvision's ``vgg11_bn``: ``features.0`` (conv), ``features.1`` (bn),
    ``features.2`` (relu), ... ``features.13`` (pool), ``classifier.0/1/2``.
    """

    def __init__(self, widths: tuple[int, int] = (16, 32), hidden: int = 128, num_classes: int = 10,
                 batch_norm: bool = True):
        super().__init__()
        c1, c2 = widths
        self.features = nn.Sequential(
            *_conv_block(1, c1, 1, batch_norm), *_conv_block(c1, c1, 1, batch_norm), nn.MaxPool2d(2),
            *_conv_block(c1, c2, 1, batch_norm), *_conv_block(c2, c2, 1, batch_norm), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Linear(c2 * 7 * 7, hidden), nn.ReLU(inplace=False), nn.Linear(hidden, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock, with one ReLU module per use (``relu1``, ``relu2``) so that
    every activation has its own name for hooks."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU(inplace=False)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU(inplace=False)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + identity)


class MnistResNet(nn.Module):
    """Small ResNet for MNIST: 3x3 stem + 2x2 max-pool, three stages of BasicBlocks (14, 7, 4 px),
    global average pool, linear classifier. Names as torchvision: ``conv1``, ``bn1``, ``relu``,
    ``maxpool``, ``layer1.0.conv1``, ``layer2.0.downsample.0``, ``avgpool``, ``fc``."""

    def __init__(self, widths: tuple[int, int, int] = (16, 32, 64), blocks: int = 1, num_classes: int = 10):
        super().__init__()
        w1, w2, w3 = widths
        self.conv1 = nn.Conv2d(1, w1, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(w1)
        self.relu = nn.ReLU(inplace=False)
        self.maxpool = nn.MaxPool2d(2)
        self.layer1 = self._stage(w1, w1, blocks, 1)
        self.layer2 = self._stage(w1, w2, blocks, 2)
        self.layer3 = self._stage(w2, w3, blocks, 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(w3, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    @staticmethod
    def _stage(inplanes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = [BasicBlock(inplanes, planes, stride)]
        layers += [BasicBlock(planes, planes) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class MnistAllConv(nn.Module):
    """All-convolutional MNIST net (Springenberg et al. 2015, with BatchNorm): no pooling layers,
    stride-2 convolutions downsample (28 -> 14 -> 7), a 1x1 convolution gives the 10 class maps and
    a global average pool the logits. Layers ``features.0`` ... (conv, bn, relu triples), ``pool``."""

    def __init__(self, widths: tuple[int, int, int] = (16, 32, 64), num_classes: int = 10,
                 batch_norm: bool = True):
        super().__init__()
        c1, c2, c3 = widths
        self.features = nn.Sequential(
            *_conv_block(1, c1, 1, batch_norm),
            *_conv_block(c1, c2, 2, batch_norm),
            *_conv_block(c2, c2, 1, batch_norm),
            *_conv_block(c2, c3, 2, batch_norm),
            *_conv_block(c3, c3, 1, batch_norm),
            nn.Conv2d(c3, num_classes, 1),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.features(x)), 1)


class MnistMLP(nn.Module):
    """Fully connected MNIST net, 784-128-64-10 with ReLU (about 109 k parameters, about 98 % test
    accuracy): the small, weaker member of the MNIST set. Layers ``flatten``, ``fc1``, ``relu1``,
    ``fc2``, ``relu2``, ``fc3``."""

    def __init__(self, hidden: tuple[int, int] = (128, 64), num_classes: int = 10):
        super().__init__()
        h1, h2 = hidden
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(28 * 28, h1)
        self.relu1 = nn.ReLU(inplace=False)
        self.fc2 = nn.Linear(h1, h2)
        self.relu2 = nn.ReLU(inplace=False)
        self.fc3 = nn.Linear(h2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(self.relu2(self.fc2(self.relu1(self.fc1(self.flatten(x))))))


class MnistLeNet5(nn.Module):
    """LeNet-5 (LeCun et al. 1998) for 28x28 MNIST: conv5x5(6, padding 2) - pool - conv5x5(16) - pool -
    120 - 84 - 10 (about 62 k parameters, about 99 % test accuracy).

    Deviations from the 1998 network, as in most modern re-implementations: ReLU instead of the scaled
    tanh, 2x2 max-pooling instead of the trainable average subsampling, a full C3 connection table and
    a linear output layer instead of the RBF units. Layers ``conv1``, ``relu1``, ``pool1``, ``conv2``,
    ``relu2``, ``pool2``, ``flatten``, ``fc1``, ``relu3``, ``fc2``, ``relu4``, ``fc3``."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.relu1 = nn.ReLU(inplace=False)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.relu2 = nn.ReLU(inplace=False)
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.relu3 = nn.ReLU(inplace=False)
        self.fc2 = nn.Linear(120, 84)
        self.relu4 = nn.ReLU(inplace=False)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.flatten(self.pool2(self.relu2(self.conv2(x))))
        return self.fc3(self.relu4(self.fc2(self.relu3(self.fc1(x)))))


class BlurPool2d(nn.Module):
    """Blur-then-subsample (Zhang 2019, "Making convolutional networks shift-invariant again",
    ``antialiased-cnns``' ``BlurPool``): a fixed depthwise low-pass with the binomial filter
    ``[1, 2, 1]`` (outer product, normalised to sum 1, the paper's default ``filt_size=3``) after
    reflection padding of 1, sampled with ``stride``. No parameters (the filter is a buffer)."""

    def __init__(self, channels: int, stride: int = 2):
        super().__init__()
        if channels < 1 or stride < 1:
            raise ValueError(f"channels and stride must be positive, got channels={channels}, stride={stride}")
        a = torch.tensor([1.0, 2.0, 1.0])
        filt = (a[:, None] * a[None, :]) / 16.0
        self.channels, self.stride = channels, stride
        self.register_buffer("filt", filt.expand(channels, 1, 3, 3).clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
        return nn.functional.conv2d(x, self.filt.to(x.dtype), stride=self.stride, groups=self.channels)


class BasicBlockAA(BasicBlock):
    """:class:`BasicBlock` with anti-aliased downsampling, as ``antialiased-cnns``' ResNet: with
    ``stride`` 2, ``conv1`` runs at stride 1 and ``conv2`` becomes ``Sequential(BlurPool2d, conv3x3)``;
    the shortcut becomes ``Sequential(BlurPool2d, conv1x1, BatchNorm)``. Same parameters as the plain
    block (the blur has none)."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__(inplanes, planes, 1)
        if stride != 1:
            self.conv2 = nn.Sequential(BlurPool2d(planes, stride), nn.Conv2d(planes, planes, 3, padding=1, bias=False))
        if stride != 1 or inplanes != planes:
            layers: list[nn.Module] = [BlurPool2d(inplanes, stride)] if stride != 1 else []
            self.downsample = nn.Sequential(
                *layers, nn.Conv2d(inplanes, planes, 1, bias=False), nn.BatchNorm2d(planes)
            )


class MnistResNetAA(MnistResNet):
    """:class:`MnistResNet` with anti-aliased downsampling (Zhang 2019): the stem's ``maxpool`` is
    ``Sequential(MaxPool2d(2, stride=1), BlurPool2d)`` and every stride-2 block is a
    :class:`BasicBlockAA`. Same widths, same parameter count, same feature-map sizes (14, 7, 4 px) and
    trained with the same settings as ``mnist_resnet``: the anti-aliased twin of claim F5 (docs/claims.md)."""

    def __init__(self, widths: tuple[int, int, int] = (16, 32, 64), blocks: int = 1, num_classes: int = 10):
        super().__init__(widths, blocks, num_classes)
        self.maxpool = nn.Sequential(nn.MaxPool2d(2, stride=1), BlurPool2d(widths[0], 2))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    @staticmethod
    def _stage(inplanes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = [BasicBlockAA(inplanes, planes, stride)]
        layers += [BasicBlockAA(planes, planes) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)


BUILTIN_MODELS: dict[str, Callable[[], nn.Module]] = {
    "mnist_vgg": MnistVGG,
    "mnist_resnet": MnistResNet,
    "mnist_allconv": MnistAllConv,
    "mnist_mlp": MnistMLP,
    "mnist_lenet5": MnistLeNet5,
    "mnist_resnet_aa": MnistResNetAA,
}
"""Built-in MNIST networks (1x28x28 in, 10 logits out) by name."""

# Training settings used by pretrained_builtin (and train() when given a built-in name): five epochs
# of Adam with a cosine decay of the learning rate to 0 (to a plateau: the test accuracy changes by
# well under 0.5 point over the last epochs). Every network gets the same settings, so mnist_resnet
# and its anti-aliased twin mnist_resnet_aa are trained the same way. Cold, the six take tens of
# minutes on 2 CPU cores, so their trained state dicts and stage checkpoints ship in the package
# (``_data/testbed``, made by ``tools/train_testbed.py``); the cache trains them only if those are absent.
_TRAIN_DEFAULTS: dict[str, dict[str, Any]] = {
    name: {"epochs": 5, "lr": 2e-3, "batch_size": 128} for name in BUILTIN_MODELS
}

DEFAULT_CHECKPOINTS: tuple[float, ...] = (0.0, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
"""Epoch positions at which :func:`pretrained_builtin` saves stage checkpoints (0 = initialisation):
nine stages on a 1-2-5 log scale from initialisation to the end of the 5 epochs."""

QUICK_TRAIN: dict[str, Any] = {"epochs": 1, "train_limit": 10000, "test_limit": 2000,
                               "checkpoint_at": [0.0, 0.02, 0.05, 0.1, 0.2, 0.35, 0.6, 1.0]}
"""``quick=True`` variants of the built-ins (tests, ``infolens demo --quick``): one epoch on the first
10,000 training digits (seconds; about 93-97 % test accuracy on the first 2,000 test digits),
cached apart from the full models."""


def _unknown(kind: str, given: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(given, list(known), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
    return f"unknown {kind} {given!r}{hint} (known: {', '.join(sorted(known))})"


def build_builtin(name: str, *, seed: int = 0) -> nn.Module:
    """A freshly initialised built-in MNIST network; the same ``seed`` gives the same weights."""
    if name not in BUILTIN_MODELS:
        raise ValueError(_unknown("built-in model name", name, BUILTIN_MODELS))
    with fork_rng(seed):
        return BUILTIN_MODELS[name]()

