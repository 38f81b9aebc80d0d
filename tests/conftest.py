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


@pytest.fixture(scope="module")
def tiny_rte(shared_glue):
    """The tiny model and a calibration loader of 64 RTE examples (the merges' tests)."""
    from peerprune.glue import task_data
    from peerprune.models import load_model, load_tokenizer
    from peerprune.train import make_loader
    tok = load_tokenizer("tiny")
    train, _ = task_data("rte", tok, glue_dir=shared_glue, max_length=48, train_examples=64,
                         eval_examples=32)
    return load_model("tiny", seed=2), make_loader(train, tok, 16, False)
