"""Without Ray installed, `--ray` is one clear line naming the extra to install."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from test_cli import TREEGYM


def test_ray_missing_is_one_line(tmp_path: Path) -> None:
    shadow = tmp_path / "ray"  # an importable `ray` that fails as a missing one does
    shadow.mkdir()
    (shadow / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    out = tmp_path / "trees.jsonl"
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    for args in (["rollout", "treegym/Maze-v0", "--out", str(out)],
                 ["bench", "rollout"]):
        done = subprocess.run([TREEGYM, *args, "--ray", "local"], capture_output=True,
                              text=True, env=env, timeout=120)
        assert done.returncode == 1
        assert done.stderr.strip().splitlines() == [
            "treegym: error: --ray needs Ray, which is not installed: pip install 'treegym[ray]'"
        ]
    assert not out.exists()
