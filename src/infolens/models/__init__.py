"""Resolving a model: built-in MNIST networks and their training (:mod:`.builtin`, :mod:`.training`),
EfficientNet-Lite, torchvision / timm names, or a ``package.module:factory`` path plus a checkpoint
(:mod:`.load`).

Nothing is downloaded by default: pretrained weights come from the EfficientNet-Lite packages, the local
torch-hub / Hugging Face caches, or a checkpoint file. torchvision, timm and the EfficientNet packages are
imported lazily, inside the functions that need them.
"""

from __future__ import annotations

from .._torch import flush_denormal, recalibrate_batchnorm
from .builtin import _TRAIN_DEFAULTS  # noqa: F401  (tests adjust the training settings)
from .builtin import (BUILTIN_MODELS, DEFAULT_CHECKPOINTS, QUICK_TRAIN, BasicBlock, BasicBlockAA, BlurPool2d,
                      MnistAllConv, MnistLeNet5, MnistMLP, MnistResNet, MnistResNetAA, MnistVGG, build_builtin)
from .load import (EFFICIENTNET_LITE, IMAGENET_MEAN, IMAGENET_STD, LoadedModel, load_checkpoint, load_model,
                   remove_input_normalization, with_input_normalization)
from .training import TrainResult, builtin_history, cache_dir, evaluate, pretrained_builtin, train

__all__ = [
    "BUILTIN_MODELS",
    "DEFAULT_CHECKPOINTS",
    "QUICK_TRAIN",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MnistVGG",
    "MnistResNet",
    "MnistAllConv",
    "BasicBlock",
    "MnistMLP",
    "MnistLeNet5",
    "MnistResNetAA",
    "BasicBlockAA",
    "BlurPool2d",
    "EFFICIENTNET_LITE",
    "build_builtin",
    "flush_denormal",
    "recalibrate_batchnorm",
    "with_input_normalization",
    "remove_input_normalization",
    "TrainResult",
    "train",
    "evaluate",
    "cache_dir",
    "pretrained_builtin",
    "builtin_history",
    "load_checkpoint",
    "LoadedModel",
    "load_model",
]
