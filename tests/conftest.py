import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)  # leave a core for a background experiment; tiny models don't need two

SHARED_GLUE = Path(__file__).resolve().parents[2] / "shared" / "glue"


@pytest.fixture(scope="session")
def shared_glue() -> Path:
    path = Path(os.environ.get("PEERPRUNE_GLUE_DIR") or SHARED_GLUE)
    if not (path / "README.md").is_file():
        pytest.skip(f"no offline GLUE folder at {path} (set PEERPRUNE_GLUE_DIR)")
    return path


@pytest.fixture()
def tmp_results(tmp_path, monkeypatch):
    """Run in a scratch folder so that results/ and checkpoints/ of the repo stay untouched."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
