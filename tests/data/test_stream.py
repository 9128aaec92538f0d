"""ImageStream: a folder decoded batch by batch (DataLoader workers) gives exactly the eager tensor's
batches, reads each planned file once, and under torchrun reads only its rank's files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from infolens import data
from infolens.data import ImageStream


def _folder(root: Path, n_per_class: int = 5) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):  # different sizes and formats: resizing and decoding both matter
            h, w = 20 + 3 * i, 30 - 2 * i
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
                root / c / f"{i}.{'png' if i % 2 else 'jpg'}")
    return root


@pytest.mark.parametrize("workers", [0, 2])
def test_stream_batches_equal_the_eager_tensor(tmp_path, workers):
    root = _folder(tmp_path)
    eager = data.load_image_folder(root, size=12).load()
    s = ImageStream(data.load_image_folder(root, size=12, lazy=True), num_workers=workers)
    assert s.shape == eager.shape and len(s) == 10
    plan = [[0, 1, 2], [7, 8], [3]]
    s.prefetch(plan)
    for b in plan:
        torch.testing.assert_close(s[b], eager[b], rtol=0, atol=0)  # same decoder, same bytes
    assert s.decoded == 6  # every planned file read once, nothing else
    torch.testing.assert_close(s[4:6], eager[4:6], rtol=0, atol=0)  # out of plan: decoded here
    torch.testing.assert_close(s[torch.tensor([9, 0])], eager[[9, 0]], rtol=0, atol=0)
    torch.testing.assert_close(s[-1], eager[-1], rtol=0, atol=0)
    with pytest.raises(IndexError, match="out of range for 10"):
        s[[10]]


def test_a_broken_file_in_a_worker_is_one_line_naming_the_file(tmp_path):
    root = _folder(tmp_path, 3)
    (root / "a" / "1.png").write_bytes(b"not a png")
    s = ImageStream(data.load_image_folder(root, size=8, lazy=True), num_workers=2)
    s.prefetch([[0, 1], [2, 3]])
    with pytest.raises(ValueError, match=r"cannot read image file .*1\.png") as e:
        s[[0, 1]]
    assert "\n" not in str(e.value) and "DataLoader worker" not in str(e.value)


def test_each_rank_reads_only_its_own_units(tmp_path, monkeypatch):
    from infolens.distributed import run_units, work_units
    from infolens.results import RunDir

    root = _folder(tmp_path / "d")
    eager = data.load_image_folder(root, size=8).load()
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    run = RunDir(tmp_path / "run", analysis="x", params={})
    s = ImageStream(data.load_image_folder(root, size=8, lazy=True), num_workers=2)
    seen = []

    def fn(u):
        x = s[list(u.indices)]
        torch.testing.assert_close(x, eager[list(u.indices)], rtol=0, atol=0)
        seen.extend(u.indices)
        return [{"i": i} for i in u.indices]

    units = work_units(10, 3)  # 0-2, 3-5, 6-8, 9: rank 1 of 2 takes the 2nd and 4th, no padding
    assert run_units(run, "t", units, fn, progress=False, data=s) == 2
    assert seen == [3, 4, 5, 9] and s.decoded == 4


def test_bad_arguments(tmp_path):
    root = _folder(tmp_path, 1)
    with pytest.raises(TypeError, match="ImageFolderData"):
        ImageStream(torch.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError, match="num_workers must be an int >= 0"):
        ImageStream(data.load_image_folder(root, size=8, lazy=True), num_workers=-1)
    with pytest.raises(TypeError, match="flip a batch"):
        ImageStream(data.load_image_folder(root, size=8, lazy=True)).flip(-1)


def test_default_workers_reads_the_environment(monkeypatch):
    monkeypatch.setenv("INFOLENS_WORKERS", "3")
    assert data.default_workers() == 3
    monkeypatch.setenv("INFOLENS_WORKERS", "x")
    with pytest.raises(ValueError, match="INFOLENS_WORKERS='x' is not an integer"):
        data.default_workers()
    monkeypatch.delenv("INFOLENS_WORKERS")
    assert 0 <= data.default_workers() <= 4


def test_unreadable_files_are_counted_before_any_work(tmp_path):
    root = _folder(tmp_path, 4)
    for i in range(4):
        (root / "b" / f"{i}.{'png' if i % 2 else 'jpg'}").write_bytes(b"broken")
    d = data.load_image_folder(root, size=8, lazy=True)
    with pytest.raises(ValueError, match=r"^4 of 8 image files .* cannot be read: b/0\.jpg, b/1\.png, b/2\.jpg, "
                                         r"\.\.\.; remove or replace them$"):
        d.check_headers()
    data.load_image_folder(root / "a", size=8, lazy=True).check_headers()  # a readable folder passes
