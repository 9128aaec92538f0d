"""The package imports with torch and numpy only (docs/design.md: extras are imported lazily)."""

from __future__ import annotations

import subprocess
import sys

EXTRAS = ("matplotlib", "torchvision", "timm", "pandas", "rich", "tqdm", "captum", "jinja2", "PIL")

PROBE = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {EXTRAS!r}:
            raise ImportError('blocked ' + name)
sys.meta_path.insert(0, Block())
import infolens, infolens.cli, infolens.experiments
missing = [n for n in infolens.__all__ if not hasattr(infolens, n)]
assert not missing, missing
print(len(infolens.__all__))
"""


def test_core_imports_without_the_extras() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) > 30
