"""One runner per paper protocol. Each composes the core modules and writes a result folder
(:class:`infolens.results.RunDir`) that ``infolens report`` turns into a page.

Every runner module exposes the same small interface, which the CLI and the demo use:

``HELP``                      one line for ``infolens --help``
``add_arguments(parser)``     its own CLI options (the common ones come from :func:`common_arguments`)
``OPTIONS``                   the kind (:data:`KINDS`) of each of those options, checked before any work
``main(args) -> Path``        run from parsed CLI arguments, return the result folder
``demo(out, *, quick, device, progress) -> Path``   its section of ``infolens demo``

``main`` holds only its paper's protocol: :func:`start_run` does the shared set-up (validate the
arguments, load the model and the data, open the result folder) and :func:`end_run` the shared ending
(print the headline, write the report).
"""

from __future__ import annotations

import argparse
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch


def common_arguments(p: argparse.ArgumentParser, *, model: bool = True) -> None:
    """Options shared by every analysis command."""
    if model:
        p.add_argument("model", help="built-in name (mnist_vgg, mnist_resnet, mnist_allconv), efficientnet_lite0, "
                       "a torchvision name (resnet18), timm:NAME, or package.module:factory with --checkpoint")
        p.add_argument("--checkpoint", help="state-dict file for the model (loaded with weights_only=True)")
        p.add_argument("--weights", default=None, help="torchvision/timm weights: DEFAULT (the default), a weight "
                       "set name (IMAGENET1K_V2, or a timm tag) or none (random); downloaded into the library's "
                       "cache when missing and there is a network")
    p.add_argument("--data", default=None, help="'mnist' (embedded), 'photos' (bundled photographs) or an image "
                   "folder; default: mnist for MNIST models, photos for ImageNet models")
    p.add_argument("--limit", type=int, default=None, help="use at most N images: the first N of mnist, of the "
                   "photographs and of a flat folder (file-name order); for a folder with class sub-folders, one "
                   "image of each class in turn (each class's files in name order) until N are taken")
    p.add_argument("--workers", type=int, default=None, help="processes that decode an image folder's files ahead "
                   "of the work (default: one per core beyond the first, at most 4; 0: decode in the main process); "
                   "the numbers do not depend on it")
    p.add_argument("--out", default=None, help="result folder (default results/<command>-<model>)")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1, mps")
    p.add_argument("--seed", type=int, default=0, help="random seed of everything random in the run: noise, "
                   "masks, initialisations (an integer in 0..2**63-1; default 0)")
    p.add_argument("--batch-size", type=int, default=64, help="images per step")
    p.add_argument("--overwrite", action="store_true", help="start the result folder afresh if it holds another run")
    p.add_argument("--no-report", action="store_true", help="do not write report.html")


def default_data(model_source: str) -> str:
    """MNIST for the built-in networks, the bundled photographs for ImageNet models."""
    return "mnist" if model_source == "builtin" else "photos"


def slug(s: Any) -> str:
    """A file-name-safe form of a model name or parameter value."""
    return re.sub(r"[^A-Za-z0-9_.=+-]+", "_", str(s)).strip("_") or "x"


@dataclass
class RunSetup:
    """What every runner's ``main`` starts from (:func:`start_run`)."""

    model: Any  # infolens.models.LoadedModel
    images: torch.Tensor
    labels: torch.Tensor
    names: list[str]
    data: str
    run: Any  # infolens.results.RunDir
    out: Path
    progress: bool
    t0: float

    def bar(self, total: int | None = None, desc: str | None = None, *, unit: str = "images") -> Any:
        """The run's one progress bar (default: over its images), with an ETA in a terminal and a line every
        few seconds in a log; loops inside it stay quiet. Use as ``with setup.bar() as p: ... p.update(n)``."""
        from .._progress import Progress

        return Progress(self.images.shape[0] if total is None else total,
                        desc or f"{self.run.analysis} {getattr(self.model, 'name', '')}".strip(), unit=unit,
                        progress=self.progress)


def start_run(args: argparse.Namespace, *, analysis: str, title: str, description: str,
              params: Callable[[Any, str], Mapping[str, Any]] | Mapping[str, Any],
              validate: Callable[[argparse.Namespace], None] | None = None,
              validate_model: Callable[[Any], None] | None = None, split: str = "test",
              load_data: bool = True, stream: bool = False) -> RunSetup:
    """The shared set-up of an analysis command, in this order so that a bad argument costs nothing and
    leaves nothing behind, and two runs into one folder can never mix:

    1. every argument is validated: each option against the kind its runner declares
       (:func:`validate_common`, :func:`runner_options`) and ``validate(args)``
       (the runner's own pure checks: ranges, names, empty lists) — nothing loaded, nothing written;
    2. the result folder ``--out`` (default ``results/<analysis>-<model>``) is locked for this process
       (a second run gets a one-line error naming the holder's PID);
    3. the model is loaded (its identity is part of the parameters; a forward that returns a tuple gives
       its first tensor, :func:`first_output`) and ``validate_model(lm)`` checks what needs it (layers
       exist, are spatial, a class index is a class) — still nothing written, so a refused layer, grid or
       check leaves nothing behind;
    4. under the lock, ``params`` (a mapping, or ``params(lm, data_spec)``) are compared with the folder's
       ``meta.json`` and ``meta.json`` is written;
    5. the data are loaded; with ``stream=True`` an image folder is not read into memory but handed on as
       an :class:`infolens.data.ImageStream` that decodes each batch when it is asked for (the runner must
       index it with global image indices, ``images[unit.indices]``, as the work units do).

    The parameters carry :func:`infolens.results.input_fingerprint` (the weights' name, the checkpoint's
    SHA-256, the data files' list), so a folder made from other weights, a retrained checkpoint or an edited
    data folder is refused instead of resumed. ``--out`` inside the ``--data`` folder is refused (the next
    run would read the results as images).

    A run refused before step 4, or whose data cannot be read, removes what it wrote (nothing is left
    behind, so the corrected command starts clean).
    """
    from .. import _progress, data, models
    from ..models.load import weights_choice
    from ..results import RunDir, input_fingerprint, lock_folder, unlock_folder

    from ..papers import PAPERS

    validate_common(args, runner_options(analysis) if analysis in PAPERS else None)
    if validate is not None:
        validate(args)
    out = Path(args.out or f"results/{analysis}-{slug(args.model if hasattr(args, 'model') else analysis)}")
    check_out_outside_data(out, getattr(args, "data", None))
    from ..distributed import is_main

    _progress.say(f"{analysis} {getattr(args, 'model', '')}: loading the model and the data",
                  progress=not getattr(args, "no_progress", False))
    created = not out.exists()
    if is_main():  # under torchrun rank 0 holds the lock for the whole world
        lock_folder(out)
    run = None
    folder = None
    try:
        lm = models.load_model(args.model, checkpoint=args.checkpoint, device=args.device,
                               **({"weights": args.weights} if getattr(args, "weights", None) is not None else {}))
        first_output(lm.model)
        if validate_model is not None:
            validate_model(lm)
        spec = args.data or default_data(lm.source)
        size = lm.input_shape[-1] if spec != "mnist" else None
        if load_data and spec.lower() not in ("mnist", "photos"):
            # list the folder (names only) now: its files are part of the fingerprint
            folder = data.load_image_folder(spec, size=size or 224, limit=args.limit, channels=lm.input_shape[0],
                                            lazy=True)
        p = dict(params(lm, spec) if callable(params) else params)
        weights = getattr(args, "weights", None)
        p.update(input_fingerprint(
            weights=(weights_choice(weights) or "none") if weights is not None else "DEFAULT",
            checkpoint=args.checkpoint, data_files=folder.paths if folder is not None else None,
            data_root=folder.root if folder is not None else None))
        fresh = not (out / "meta.json").exists()
        run = RunDir(out, writer=is_main(), analysis=analysis, params=p, seed=getattr(args, "seed", None), device=args.device,
                     overwrite=getattr(args, "overwrite", False), title=title, description=description)
    except BaseException:
        if run is None and created and is_main():
            unlock_folder(out)
            _remove_if_only_lock(out)
        raise
    if load_data:
        try:
            if folder is not None and stream:
                folder.check_headers()  # unreadable files and bombs stop the run before any work
                images: Any = data.ImageStream(folder, device=args.device,
                                               num_workers=getattr(args, "workers", None))
                labels, names = folder.labels, folder.names
            elif folder is not None:
                images, labels, names = folder.load(), folder.labels, folder.names
            else:
                images, labels, names = data.load_dataset(spec, split=split, limit=args.limit, size=size,
                                                          channels=lm.input_shape[0])
        except BaseException:
            if fresh and is_main():  # a data error leaves no meta.json behind: the corrected command starts clean
                (out / "meta.json").unlink(missing_ok=True)
                if created:
                    unlock_folder(out)
                    _remove_if_only_lock(out)
            raise
    else:
        images, labels, names = torch.empty(0), torch.empty(0, dtype=torch.long), []
    progress = _progress.enabled(not getattr(args, "no_progress", False))
    return RunSetup(lm, images, labels, list(names), spec, run, out, progress, time.perf_counter())


def _first_of(module: torch.nn.Module, inputs: Any, output: Any) -> Any:
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    return output


def first_output(model: torch.nn.Module) -> torch.nn.Module:
    """Make a model whose forward returns a tuple or list (logits, extras...) return its first tensor, the
    logits, as every analysis expects (N, classes) scores. A forward hook on the model itself, so layer
    names stay the model's own; returns the model. Applied once per model."""
    if not getattr(model, "_infolens_first_output", False):
        model.register_forward_hook(_first_of)
        model._infolens_first_output = True  # type: ignore[assignment]
    return model


def parse_target(value: Any, option: str = "--target") -> int | None:
    """``--target``: a class index (an integer >= 0), or ``predicted`` (None: each image's predicted class,
    the default)."""
    if value is None or str(value).strip().lower() in ("predicted", "pred", "prediction"):
        return None
    try:
        t = int(str(value).strip())
    except ValueError:
        t = -1
    if t < 0:
        raise ValueError(f"{option} must be a class index (an integer >= 0) or 'predicted' (the default), "
                         f"got {value!r}")
    return t


def check_out_outside_data(out: str | Path, data: str | None) -> None:
    """Refuse a result folder inside (or equal to) the image folder ``--data``: the next run would read the
    result's figures as images of a class named after the folder."""
    if not data or data.lower() in ("mnist", "photos"):
        return
    d, o = Path(data).expanduser().resolve(), Path(out).expanduser().resolve()
    if o == d or d in o.parents:
        raise ValueError(f"--out {out} lies inside --data {data}: the next run would read the results as images; "
                         f"choose an --out folder outside the data folder")


def check_spatial(lm: Any, layers: Sequence[str], *, option: str = "--layers") -> None:
    """Refuse, before any data are loaded, layers whose output is not a stack of 2-D maps (N, C, H, W):
    one forward pass of a blank input through the model (for ``validate_model``)."""
    from ..probe import capture

    shape = tuple(lm.input_shape)
    x = torch.zeros(1, *shape, device=next((p.device for p in lm.model.parameters()), torch.device("cpu")))
    with torch.no_grad():
        cap = capture(lm.model, x, list(layers), stop_after_last=True)
    flat = [f"{n} {tuple(t.shape[1:])}" for n, t in cap.outputs.items() if getattr(t, "ndim", 0) != 4]
    if flat:
        raise ValueError(f"{option}: {', '.join(flat[:4])} {'is' if len(flat) == 1 else 'are'} not spatial (N, C, H, W) "
                         f"layer output(s); choose convolutional layers (e.g. 'all conv'; list them with "
                         f"`infolens layers {lm.name}`)")


def _remove_if_only_lock(folder: Path) -> None:
    from ..results import LOCK_NAME

    try:
        (folder / LOCK_NAME).unlink(missing_ok=True)
        folder.rmdir()  # only if empty
    except OSError:
        pass


#: What a value of each kind of option must be. Every runner declares the kind of each of its options in
#: its ``OPTIONS`` mapping (next to its ``add_arguments``), and :func:`validate_options` checks them all
#: before any work; a test requires every option of every runner's parser to be declared.
KINDS: dict[str, str] = {
    "positive": "a positive integer",
    "count": "an integer >= 0",
    "int": "an integer",
    "seed": "an integer in 0..2**63-1 (torch's seed range)",
    "positive_float": "a finite number > 0",
    "fraction": "a number in (0, 1]",
    "list": "a non-empty comma-separated list",
    "choice": "one of the parser's choices (argparse checks it)",
    "flag": "a switch without a value",
    "file": "an existing file",
    "folder_out": "a folder name that is not an existing file",
    "data": "'mnist', 'photos' or an existing image folder",
    "text": "free text that the runner's own validate parses (names, selections, 'auto')",
}


def common_options(*, model: bool = True) -> dict[str, str]:
    """The kinds of the options :func:`common_arguments` adds (see :data:`KINDS`)."""
    own = {"model": "text", "checkpoint": "file", "weights": "text"} if model else {}
    return {**own, "data": "data", "limit": "positive", "out": "folder_out", "device": "text", "seed": "seed", "workers": "count",
            "batch_size": "positive", "overwrite": "flag", "no_report": "flag"}


def runner_options(analysis: str) -> dict[str, str]:
    """Every option kind of a paper's analysis command: the common ones and its runner's ``OPTIONS``."""
    import importlib

    from ..papers import PAPERS

    mod = importlib.import_module(PAPERS[analysis].runner)
    return {**common_options(model=getattr(mod, "TAKES_MODEL", True)), **mod.OPTIONS}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check(kind: str, v: Any) -> bool:
    if kind == "positive":
        return _is_int(v) and v >= 1
    if kind == "count":
        return _is_int(v) and v >= 0
    if kind == "int":
        return _is_int(v)
    if kind == "seed":
        return _is_int(v) and 0 <= v <= MAX_SEED
    if kind == "positive_float":
        return _is_number(v) and v > 0
    if kind == "fraction":
        return _is_number(v) and 0 < v <= 1
    if kind == "list":
        return not isinstance(v, str) or bool([x for x in v.split(",") if x.strip()])
    if kind == "flag":
        return isinstance(v, bool)
    if kind == "file":
        return Path(v).is_file()
    if kind == "folder_out":
        return not (Path(v).exists() and not Path(v).is_dir())
    if kind == "data":
        return str(v).lower() in ("mnist", "photos") or Path(v).expanduser().is_dir()
    if kind in ("choice", "text"):
        return True
    raise ValueError(f"unknown option kind {kind!r}; choose from {', '.join(KINDS)}")


_FIXES = {
    "list": "pass a comma-separated list (or leave the option out for the default)",
    "file": "pass the path of an existing file (a state-dict file for --checkpoint)",
    "folder_out": "choose a folder name",
    "data": "pass 'mnist', 'photos' or the path of an image folder",
}


def validate_options(args: argparse.Namespace, options: Mapping[str, str]) -> None:
    """Check every declared option of ``args`` against its kind (:data:`KINDS`); an option left at ``None``
    (its default) passes. Raises ``ValueError`` (``FileNotFoundError`` for a missing file or folder) naming
    the option, the value given, what it must be and the fix."""
    for name, kind in options.items():
        v = getattr(args, name, None)
        if v is None or (kind in ("file", "folder_out", "data") and v == "") or _check(kind, v):
            continue
        flag = f"--{name.replace('_', '-')}"
        if kind == "list":
            raise ValueError(f"{flag} is empty; {_FIXES[kind]}")
        if kind == "folder_out":
            raise ValueError(f"{flag} {v} is an existing file, not a folder; {_FIXES[kind]}")
        if kind == "file":
            if Path(v).is_dir():
                raise ValueError(f"{flag} {v} is a folder; {_FIXES[kind]}")
            raise FileNotFoundError(f"{flag} {v} does not exist; {_FIXES[kind]}")
        if kind == "data":
            raise FileNotFoundError(f"{flag} {v} is neither 'mnist', 'photos' nor an existing image folder; "
                                    f"{_FIXES[kind]}")
        raise ValueError(f"{flag} must be {KINDS[kind]}, got {v!r}")


#: The largest seed torch takes (``torch.manual_seed`` stores a signed 64-bit integer).
MAX_SEED = 2**63 - 1


def check_finite_floats(args: argparse.Namespace) -> None:
    """Refuse NaN and infinity in every float option (``--sigma0 inf``, ``--tau nan``, ``--q inf``, ...): argparse's
    ``float`` takes them, and every number computed from them would be meaningless. One line naming the
    option."""
    for name, v in sorted(vars(args).items()):
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"--{name.replace('_', '-')} must be a finite number, got {v}; pass a finite value "
                             f"(or leave the option out for its default)")


def validate_common(args: argparse.Namespace, options: Mapping[str, str] | None = None) -> None:
    """The checks before any work: every option in ``options`` (default: the common ones,
    :func:`common_options`) against its declared kind (:func:`validate_options`; ``--seed`` in torch's
    range 0..2**63-1), and no float option NaN or infinite."""
    check_finite_floats(args)
    validate_options(args, common_options() if options is None else options)


def end_run(setup: RunSetup, args: argparse.Namespace, headline: Mapping[str, Any] | None = None,
            lines: Sequence[str] = ()) -> Path:
    """The shared ending: print the headline numbers (one ``key: value`` line each, then ``lines``) and
    write ``report.html`` unless ``--no-report``; returns the result folder."""
    from ..distributed import is_main
    from ..report import build_report

    for k, v in (headline or {}).items():
        if k != "seconds":
            print(f"{k}: {v}")
    for line in lines:
        print(line)
    if not getattr(args, "no_report", False) and is_main():  # under torchrun rank 0 writes the page
        build_report(setup.out)
    return setup.out
