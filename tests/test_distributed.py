"""distributed.py: global work units, sharding without padding, per-image seeds, resume."""

from __future__ import annotations

import torch

from infolens import _torch as T
from infolens import distributed as dist
from infolens.results import RunDir


def test_units_cover_every_index_once_and_keys_are_global():
    units = dist.work_units(10, 4)
    assert [u.indices for u in units] == [(0, 1, 2, 3), (4, 5, 6, 7), (8, 9)]
    assert [u.key for u in units] == ["0000000-0000004", "0000004-0000008", "0000008-0000010"]


def test_sharding_is_disjoint_and_unpadded(monkeypatch):
    units = dist.work_units(11, 2)
    shards = []
    for rank in range(3):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "3")
        shards.append(dist.my_units(units))
    flat = sorted(i for s in shards for u in s for i in u.indices)
    assert flat == list(range(11))  # no duplicates (DistributedSampler would pad to 12)


def test_per_image_noise_does_not_depend_on_batch_composition():
    a = T.per_image_randn((2, 3), seed=7, indices=[0, 1, 2, 3])
    b = T.per_image_randn((2, 3), seed=7, indices=[2, 3])
    torch.testing.assert_close(a[2:], b, rtol=0, atol=0)
    assert not torch.equal(a[0], a[1])
    assert T.image_seed(7, 1) != T.image_seed(8, 1)


def test_run_units_resumes_without_redoing_work(tmp_path):
    run = RunDir(tmp_path, analysis="x", params={})
    units = dist.work_units(6, 2)
    calls = []

    def fn(u):
        calls.append(u.key)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed during the second unit
        return [{"image": i, "sq": i * i} for i in u.indices]

    try:
        dist.run_units(run, "t", units, fn, progress=False)
    except KeyboardInterrupt:
        pass
    assert run.part_keys("t") == ["0000000-0000002"]
    calls.clear()

    def fn_again(u):
        calls.append(u.key)
        return [{"image": i, "sq": i * i} for i in u.indices]

    done = dist.run_units(run, "t", units, fn_again, progress=False)
    assert done == 2 and calls == ["0000002-0000004", "0000004-0000006"]
    rows = dist.gather_table(run, "t", sort_by=["image"])
    assert [r["sq"] for r in rows] == [0, 1, 4, 9, 16, 25]
