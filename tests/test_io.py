"""_io.py: atomic writes of every kind respect the umask and leave no temporary file; file fingerprints."""

import json
import os

import pytest
import torch

from infolens._io import (atomic_torch_save, atomic_write_json, atomic_write_text, file_sha256, read_csv,
                          write_csv)

#: FIPS 180-2, appendix B.1: SHA-256("abc").
SHA256_ABC = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


@pytest.mark.parametrize("umask, expected", [(0o022, 0o644), (0o077, 0o600)])
def test_every_writer_gives_the_umask_mode_and_leaves_no_temporary(tmp_path, umask, expected):
    old = os.umask(umask)
    try:
        paths = [atomic_write_text(tmp_path / "a.txt", "x"), atomic_write_json(tmp_path / "b.json", {"k": [1, 2]}),
                 write_csv(tmp_path / "c.csv", [{"a": 1}]), atomic_torch_save({"w": torch.ones(2)}, tmp_path / "d.pt")]
    finally:
        os.umask(old)
    assert [p.stat().st_mode & 0o777 for p in paths] == [expected] * 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.json", "c.csv", "d.pt"]


def test_written_files_read_back(tmp_path):
    assert json.loads(atomic_write_json(tmp_path / "b.json", {"k": [1, 2.5]}).read_text()) == {"k": [1, 2.5]}
    back = torch.load(atomic_torch_save({"w": torch.arange(3)}, tmp_path / "d.pt"), weights_only=True)
    assert torch.equal(back["w"], torch.arange(3))
    (row,) = read_csv(write_csv(tmp_path / "c.csv", [{"a": 1, "b": 0.1, "c": float("nan")}]))
    assert row["a"] == 1 and row["b"] == 0.1 and row["c"] != row["c"]


def test_file_sha256_is_the_standard_digest_whatever_the_chunk(tmp_path):
    path = tmp_path / "abc"
    path.write_bytes(b"abc")
    assert file_sha256(path) == SHA256_ABC
    assert file_sha256(path, chunk=1) == SHA256_ABC  # read one byte at a time
    with pytest.raises(FileNotFoundError, match="file_sha256"):
        file_sha256(tmp_path / "missing")
