"""Remake the shipped MNIST testbed: train every built-in network with its default settings and pack
the stage checkpoints (float16) into ``src/infolens/_data/testbed/<name>/``.

    OMP_NUM_THREADS=2 python tools/train_testbed.py train [--work DIR] [--models a,b]   # fp32, resumable
    python tools/train_testbed.py pack [--work DIR]                                      # fp16 into _data

``train`` runs :func:`infolens.models.train` with ``_builtin_settings(name)`` (5 epochs, Adam, cosine
learning rate, stage checkpoints at ``DEFAULT_CHECKPOINTS``, seed 0) and keeps a finished model's
folder, so an interrupted run resumes model by model. ``pack`` rounds each stage to float16 (integer
buffers stay; the epoch-0 stage is not shipped but rebuilt from the seed, after checking it equals the
saved one), measures the packed final model on the first 2,000 test digits and on the whole test
set, and writes ``history.json`` beside the stage files (that file is what the test checks against).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from infolens import data  # noqa: E402
from infolens.models import BUILTIN_MODELS, build_builtin, evaluate, load_checkpoint, train  # noqa: E402
from infolens.models.training import SHIPPED_DIR, _builtin_settings  # noqa: E402

ORDER = ("mnist_vgg", "mnist_resnet", "mnist_resnet_aa", "mnist_lenet5", "mnist_mlp", "mnist_allconv")
SHIPPED_TEST_LIMIT = 2000


def do_train(work: Path, names: list[str]) -> None:
    for name in names:
        folder = work / name
        if (folder / "history.json").is_file():
            print(f"{name}: done already, skipped", flush=True)
            continue
        folder.mkdir(parents=True, exist_ok=True)
        s = _builtin_settings(name)
        t0 = time.time()
        res = train(name, epochs=s["epochs"], batch_size=s["batch_size"], lr=s["lr"], seed=s["seed"],
                    checkpoint_at=s["checkpoint_at"], out_dir=folder, progress=True)
        hist = [{k: v for k, v in r.items() if k != "path"} | {"file": Path(r["path"]).name} for r in res.history]
        meta = {"settings": s, "train_seconds": round(time.time() - t0, 1), "torch": torch.__version__,
                "threads": torch.get_num_threads(), "history": hist}
        (folder / "history.json").write_text(json.dumps(meta, indent=2) + "\n")
        print(f"{name}: {hist[-1]['test_acc']:.4f} in {meta['train_seconds']} s", flush=True)


def do_pack(work: Path, names: list[str]) -> None:
    test_x, test_y = data.mnist_tensors("test")
    for name in names:
        src = work / name
        meta = json.loads((src / "history.json").read_text())
        dest = SHIPPED_DIR / name
        dest.mkdir(parents=True, exist_ok=True)
        rows = []
        for row in meta["history"]:
            if row["step"] == 0:  # the initialisation: rebuilt from the seed at run time, not shipped
                init = build_builtin(name, seed=meta["settings"]["seed"]).state_dict()
                saved = torch.load(src / row["file"], map_location="cpu", weights_only=True)
                if not all(torch.equal(init[k], saved[k]) for k in init):
                    raise SystemExit(f"{name}: the saved initialisation differs from build_builtin(seed)")
                rows.append({k: v for k, v in row.items() if k != "file"}
                            | {"file": None, "init_seed": meta["settings"]["seed"]})
                continue
            state = torch.load(src / row["file"], map_location="cpu", weights_only=True)
            half = {k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}
            file = f"ep{row['epoch']:g}.pt"
            torch.save(half, dest / file)
            rows.append({k: v for k, v in row.items() if k != "file"} | {"file": file})
        model = build_builtin(name)
        load_checkpoint(dest / rows[-1]["file"], model)
        acc_full = evaluate(model, test_x, test_y)
        acc_small = evaluate(model, test_x[:SHIPPED_TEST_LIMIT], test_y[:SHIPPED_TEST_LIMIT])
        out = {
            "settings": meta["settings"], "final": rows[-1]["file"], "dtype": "float16",
            "params": sum(p.numel() for p in model.parameters()),
            "test_acc": acc_full, f"test_acc_first{SHIPPED_TEST_LIMIT}": acc_small,
            "train_seconds": meta["train_seconds"], "threads": meta["threads"], "torch": meta["torch"],
            "history": rows,
        }
        (dest / "history.json").write_text(json.dumps(out, indent=2) + "\n")
        size = sum(f.stat().st_size for f in dest.iterdir())
        print(f"{name}: params {out['params']}, test acc {acc_full:.4f} (first 2000: {acc_small:.4f}), "
              f"{len(rows)} stages, {size / 1e6:.2f} MB, trained in {meta['train_seconds']} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=["train", "pack", "all"])
    ap.add_argument("--work", default=os.path.expanduser("~/.cache/infolens/testbed-train"))
    ap.add_argument("--models", default=",".join(ORDER))
    args = ap.parse_args()
    names = [n for n in args.models.split(",") if n]
    unknown = [n for n in names if n not in BUILTIN_MODELS]
    if unknown:
        raise SystemExit(f"unknown models {unknown}; known: {sorted(BUILTIN_MODELS)}")
    work = Path(args.work)
    if args.step in ("train", "all"):
        do_train(work, names)
    if args.step in ("pack", "all"):
        do_pack(work, names)


if __name__ == "__main__":
    main()
