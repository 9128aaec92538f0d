"""One runner per paper protocol. Each composes the core modules and writes a result folder
(:class:`infolens.results.RunDir`) that ``infolens report`` turns into a page.

Every runner module exposes the same small interface, which the CLI and the demo use:

``HELP``                      one line for ``infolens --help``
``add_arguments(parser)``     its own CLI options (the common ones come from :func:`common_arguments`)
``main(args) -> Path``        run from parsed CLI arguments, return the result folder
``demo(out, *, quick, device, progress) -> Path``   its section of ``infolens demo``
"""

from __future__ import annotations

import argparse

#: CLI command -> runner module (imported lazily, so ``infolens --help`` stays fast).
RUNNERS: dict[str, str] = {
    "srop": "infolens.experiments.srop",
    "discard": "infolens.experiments.discard",
    "signal": "infolens.experiments.signal",
    "attribution": "infolens.experiments.forgrad",
}

#: Order of the demo sections.
DEMO_ORDER = ["srop", "attribution", "discard", "signal"]


def common_arguments(p: argparse.ArgumentParser, *, model: bool = True) -> None:
    """Options shared by every analysis command."""
    if model:
        p.add_argument("model", help="built-in name (mnist_vgg, mnist_resnet, mnist_allconv), efficientnet_lite0, "
                       "a torchvision name (resnet18), timm:NAME, or package.module:factory with --checkpoint")
        p.add_argument("--checkpoint", help="state-dict file for the model (loaded with weights_only=True)")
    p.add_argument("--data", default=None, help="'mnist' (embedded), 'photos' (bundled photographs) or an image "
                   "folder; default: mnist for MNIST models, photos for ImageNet models")
    p.add_argument("--limit", type=int, default=None, help="use only the first N images")
    p.add_argument("--out", default=None, help="result folder (default results/<command>-<model>)")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1, mps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=64, help="images per step")
    p.add_argument("--overwrite", action="store_true", help="start the result folder afresh if it holds another run")
    p.add_argument("--no-report", action="store_true", help="do not write report.html")


def default_data(model_source: str) -> str:
    """MNIST for the built-in networks, the bundled photographs for ImageNet models."""
    return "mnist" if model_source == "builtin" else "photos"
