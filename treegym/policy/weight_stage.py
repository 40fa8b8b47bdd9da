"""`WeightStage`: where a trainer leaves new weights for a vLLM engine to reload.

vLLM's workers are other processes (and, behind a server, maybe another host that
shares a filesystem), and an RPC's arguments can't carry tensors efficiently, so new
weights travel as one safetensors file in a directory that `reload_weights` reads.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


class WeightStage:
    """A directory holding the latest weights; a temporary one is removed on `close`."""

    def __init__(self, directory: str | Path | None = None) -> None:
        self._given = Path(directory) if directory is not None else None
        self.path: Path | None = None

    def write(self, weights: Iterable[tuple[str, torch.Tensor]]) -> Path:
        """Write `weights` (HF names) as the directory's model.safetensors; return the dir."""
        from safetensors.torch import save_file

        if self.path is None:
            self.path = self._given or Path(tempfile.mkdtemp(prefix="treegym-sync-"))
            self.path.mkdir(parents=True, exist_ok=True)
        save_file({name: t.detach().to("cpu").contiguous() for name, t in weights},
                  str(self.path / "model.safetensors"))
        return self.path

    def close(self) -> None:
        if self.path is not None and self._given is None:
            shutil.rmtree(self.path, ignore_errors=True)
        self.path = None
