"""The pins hold: the installed packages are the ones constraints.txt names."""
import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# the main environment's pins; the second environment's, with transformers 5, beside them
CONSTRAINTS = ROOT / ("constraints.txt" if int(version("transformers").split(".")[0]) < 5
                      else "constraints-transformers5.txt")


def pins():
    for line in CONSTRAINTS.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", line)
        if m:
            yield m.group(1), m.group(2)


def test_transformers_is_a_version_we_test():
    """The two lines .ci/run tests: 4 (head_mask, prune_heads) and 5 (neither: the gating
    hooks and peerprune's own surgery stand in)."""
    major = int(version("transformers").split(".")[0])
    assert major in (4, 5), f"transformers {version('transformers')} installed; tested: 4, 5"
    from peerprune import heads
    assert heads.HEAD_MASK == (major == 4)


@pytest.mark.parametrize("name,pinned", list(pins()))
def test_installed_version_matches_constraints(name, pinned):
    try:
        installed = version(name)
    except PackageNotFoundError:
        pytest.fail(f"{name} is pinned in constraints.txt but not installed")
    assert installed.split("+")[0] == pinned, f"{name}: installed {installed}, pinned {pinned}"


def test_head_masks_are_honoured():
    """Guard against a head mask that is accepted but ignored (transformers 5 ignores a
    `head_mask` argument; `heads.masked` must not)."""
    import torch
    from peerprune.heads import masked as apply_mask
    from peerprune.models import load_model
    model = load_model("tiny")
    x = torch.randint(0, 1000, (2, 8))
    with torch.no_grad():
        full = model(input_ids=x).logits
        masked = apply_mask(model, torch.zeros(2, 4), input_ids=x).logits
    assert (full - masked).abs().max() > 1e-6
