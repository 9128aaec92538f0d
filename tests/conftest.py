"""Shared pytest set-up. Each section belongs to one module's tests; add yours as a new section."""

from __future__ import annotations

import os
import tempfile

# Set before anything imports torch / huggingface_hub: tests never download and never write
# to the user's caches (these are read again at call time, so the session fixture below can
# still point them at pytest's own temporary folder).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# No network for torch.hub either (torchvision weights download when missing): every HTTP(S)
# request goes to a closed local port and fails at once, whatever network the machine has.
for _var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
    os.environ[_var] = "http://127.0.0.1:9"
for _var in ("no_proxy", "NO_PROXY"):
    os.environ.pop(_var, None)
os.environ.setdefault("INFOLENS_CACHE", tempfile.mkdtemp(prefix="infolens-test-cache-"))

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))


# =========================================================================== data / models
# (tests/test_data.py, tests/test_models.py)


@pytest.fixture(scope="session", autouse=True)
def infolens_cache(tmp_path_factory: pytest.TempPathFactory):
    """Point ``INFOLENS_CACHE`` (trained built-in models) at a per-session temporary folder."""
    path = tmp_path_factory.mktemp("infolens-cache")
    old = os.environ.get("INFOLENS_CACHE")
    os.environ["INFOLENS_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("INFOLENS_CACHE", None)
    else:
        os.environ["INFOLENS_CACHE"] = old


@pytest.fixture(scope="session")
def mnist_test_small() -> tuple[torch.Tensor, torch.Tensor]:
    """The first 1000 MNIST test images (N, 1, 28, 28) in [0, 1] and their labels."""
    from infolens.data import mnist_tensors

    return mnist_tensors("test", limit=1000)


@pytest.fixture(scope="session")
def quick_mnist_model() -> torch.nn.Module:
    """A built-in ``mnist_vgg`` trained for a few seconds (4000 images, 1 epoch; about 95 % test
    accuracy), in eval mode. For tests that need a model that has learnt something, fast."""
    from infolens.models import train

    return train("mnist_vgg", epochs=1, train_limit=4000, test_limit=1000, seed=0, progress=False).model


@pytest.fixture(scope="session")
def photos_small() -> tuple[torch.Tensor, list[str]]:
    """The bundled photographs at 64x64: (N, 3, 64, 64) in [0, 1] and their names."""
    from infolens.data import load_photos

    return load_photos(size=64)
