"""Several real processes (gloo on the CPU) give exactly the rows of one process; a run killed midway
and started again gives exactly the rows of an uninterrupted run (issue: scale out with torchrun)."""

from __future__ import annotations

import filecmp
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from infolens.models import build_builtin

pytestmark = pytest.mark.timeout(600)

# (command, extra arguments): small, fast runs of each runner that shards images.
CASES = {
    "srop": ["--layers", "all conv", "--check", "none"],
    "forgrad": ["--methods", "saliency,smoothgrad", "--metrics", "deletion,insertion", "--forgrad", "3"],
    "discard": ["--layers", "features.5,features.14", "--steps", "20", "--samples", "4", "--decoders", "0"],
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "mnist_allconv.pt"
    torch.save(build_builtin("mnist_allconv", seed=1).state_dict(), path)
    return path


def _cmd(command: str, out: Path, checkpoint: Path, limit: int = 24) -> list[str]:
    return ["infolens", "--no-progress", command, "mnist_allconv", "--checkpoint", str(checkpoint), "--data", "mnist",
            "--limit", str(limit), "--batch-size", "4", "--out", str(out), "--no-report", *CASES[command]]


def _run(argv: list[str], env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    code = "import sys; from infolens.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *argv[1:]], env=env, capture_output=True, text=True,
                          timeout=500)


def _run_world(argv: list[str], world: int) -> None:
    port = str(_free_port())
    procs = []
    for rank in range(world):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "RANK": str(rank), "LOCAL_RANK": str(rank),
               "WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}
        code = "import sys; from infolens.cli import main; sys.exit(main(sys.argv[1:]))"
        procs.append(subprocess.Popen([sys.executable, "-c", code, *argv[1:]], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=500) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]


def _tables(out: Path) -> list[Path]:
    return sorted((out / "tables").glob("*.csv"))


def _assert_same_tables(a: Path, b: Path) -> None:
    ta, tb = _tables(a), _tables(b)
    assert [p.name for p in ta] == [p.name for p in tb] and ta
    for pa, pb in zip(ta, tb):
        assert filecmp.cmp(pa, pb, shallow=False), f"{pa.name} differs between {a} and {b}"


@pytest.mark.parametrize("command", list(CASES))
def test_two_processes_give_the_rows_of_one(tmp_path, checkpoint, command):
    one, two = tmp_path / "one", tmp_path / "two"
    r = _run(_cmd(command, one, checkpoint))
    assert r.returncode == 0, r.stderr[-2000:]
    _run_world(_cmd(command, two, checkpoint), world=2)
    _assert_same_tables(one, two)


def test_killed_run_resumes_to_identical_tables(tmp_path, checkpoint):
    full, killed = tmp_path / "full", tmp_path / "killed"
    r = _run(_cmd("srop", full, checkpoint, limit=64))
    assert r.returncode == 0, r.stderr[-2000:]
    argv = _cmd("srop", killed, checkpoint, limit=64)
    code = "import sys; from infolens.cli import main; sys.exit(main(sys.argv[1:]))"
    p = subprocess.Popen([sys.executable, "-c", code, *argv[1:]], env={**os.environ, "OMP_NUM_THREADS": "1"},
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    parts = killed / "parts"
    deadline = time.time() + 300
    while time.time() < deadline and p.poll() is None and len(list(parts.glob("*/*.csv"))) < 2:
        time.sleep(0.05)
    was_running = p.poll() is None
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    n_before = len(list(parts.glob("*/*.csv")))
    if was_running:
        assert not _tables(killed) or n_before < 16  # it really stopped midway
    before = {q: q.stat().st_mtime_ns for q in parts.glob("*/*.csv")}
    r = _run(argv)
    assert r.returncode == 0, r.stderr[-2000:]
    for q, mtime in before.items():  # finished units were not redone
        assert q.stat().st_mtime_ns == mtime
    _assert_same_tables(full, killed)


_CLAIMS = ("import sys; from infolens.distributed import init_from_env; init_from_env(); "
           "from infolens.experiments.discard.verdicts import claims; "
           "claims(sys.argv[1], quick=True, progress=False, only_mnist=True, models=['mnist_mlp'])")


def test_discard_claims_share_their_units_over_ranks(tmp_path):
    """Information discarding runs on every rank of ``reproduce`` (Paper.all_ranks): the decoders, the digits
    of each model and stage, and the isometries are shared out as units, the ranks meet at the gathers, and
    the tables equal one process's byte for byte."""
    one, two = tmp_path / "one", tmp_path / "two"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", _CLAIMS, str(one)], env=env, capture_output=True, text=True, timeout=500)
    assert r.returncode == 0, r.stderr[-2000:]
    port = str(_free_port())
    procs = [subprocess.Popen([sys.executable, "-c", _CLAIMS, str(two)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env={**env, "RANK": str(k), "LOCAL_RANK": str(k), "WORLD_SIZE": "2",
                                              "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}) for k in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=500)
        assert p.returncode == 0, err[-2000:]
    _assert_same_tables(one, two)
    parts = sorted(q.name for q in (two / "parts" / "entropy").glob("*.csv"))
    assert len(parts) == 2 * len({q.rsplit("-", 2)[0] for q in parts})  # 3 digits in units of 2: two per call
    assert len(list((two / "parts" / "decoders").glob("*.csv"))) == 5 and (two / "figures" / "depth.png").is_file()


def test_discard_decoders_are_trained_once_over_ranks(tmp_path, checkpoint):
    """``infolens discard --decoders N`` under torchrun: each layer's decoder is one unit, trained by one
    rank; the ranks then load them all, and the tables equal one process's."""
    def argv(out: Path) -> list[str]:
        return ["infolens", "--no-progress", "discard", "mnist_allconv", "--checkpoint", str(checkpoint), "--data",
                "mnist", "--limit", "4", "--batch-size", "2", "--out", str(out), "--no-report", "--layers",
                "features.5,features.14", "--steps", "3", "--samples", "2", "--decoders", "16"]
    one, two = tmp_path / "one", tmp_path / "two"
    r = _run(argv(one))
    assert r.returncode == 0, r.stderr[-2000:]
    _run_world(argv(two), world=2)
    _assert_same_tables(one, two)
    assert sorted(p.name for p in (two / "parts" / "decoders").glob("*.csv")) == [
        "mnist_allconv-features.14.csv", "mnist_allconv-features.5.csv"]
