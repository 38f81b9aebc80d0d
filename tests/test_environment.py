"""The pins hold: the installed packages are the ones constraints.txt names."""
import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

CONSTRAINTS = Path(__file__).resolve().parents[1] / "constraints.txt"


def pins():
    for line in CONSTRAINTS.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", line)
        if m:
            yield m.group(1), m.group(2)


def test_transformers_below_5():
    """transformers 5 removed prune_heads and silently ignores head masks."""
    major = int(version("transformers").split(".")[0])
    assert major < 5, f"transformers {version('transformers')} installed; peerprune needs <5"


@pytest.mark.parametrize("name,pinned", list(pins()))
def test_installed_version_matches_constraints(name, pinned):
    try:
        installed = version(name)
    except PackageNotFoundError:
        pytest.fail(f"{name} is pinned in constraints.txt but not installed")
    assert installed.split("+")[0] == pinned, f"{name}: installed {installed}, pinned {pinned}"


def test_head_mask_is_honoured():
    """Guard against a transformers that accepts head_mask but ignores it."""
    import torch
    from peerprune.models import load_model
    model = load_model("tiny")
    x = torch.randint(0, 1000, (2, 8))
    with torch.no_grad():
        full = model(input_ids=x).logits
        masked = model(input_ids=x, head_mask=torch.zeros(2, 4)).logits
    assert (full - masked).abs().max() > 1e-6
