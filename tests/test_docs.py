"""The documents carry no typed numbers: a decimal in README.md or docs/*.md must come from
the results files, through a generated section that `python -m peerprune report` rewrites."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

GENERATED = re.compile(r"<!-- table:([\w:-]+) -->.*?<!-- /table:\1 -->", re.S)
FENCED = re.compile(r"^```.*?^```", re.S | re.M)
INLINE = re.compile(r"`[^`\n]+`")
LINK_TARGET = re.compile(r"\]\([^)\s]+\)")
COMMENT = re.compile(r"<!--.*?-->", re.S)
DECIMAL = re.compile(r"(?<![\w.])\d+\.\d+(?![\w.])")
# a version number: x.y.z, or x.y right after the name of what it versions
VERSION = re.compile(r"(?<![\w.])\d+\.\d+\.\d+|(?:transformers|torch|Python|pip|datasets|"
                     r"accelerate|version|versions)\s+(?:[<>=~]+\s*)?\d+\.\d+", re.I)


def typed_decimals(text: str) -> list[str]:
    """The decimal numbers of `text` outside generated sections, code, link targets,
    comments and version numbers, each with a little of its context."""
    for pattern in (GENERATED, FENCED, INLINE, LINK_TARGET, COMMENT, VERSION):
        text = pattern.sub(" ", text)
    return [text[max(0, m.start() - 30):m.end() + 10].replace("\n", " ")
            for m in DECIMAL.finditer(text)]


def test_the_checker_finds_typed_decimals_and_only_those():
    text = ("We got 86.14 F1.\n<!-- table:x:full -->\n| 1.5 |\n<!-- /table:x:full -->\n"
            "`lr 2e-5, 0.1` and transformers 4.57, torch 2.13.0, [fig](figures/s0.92.png)\n"
            "```\nbeta 0.5\n```\nthen 3 heads, 0.5 point.")
    assert len(typed_decimals(text)) == 2
    found = " ".join(typed_decimals(text))
    assert "86.14" in found and "0.5 point" in found
    assert "1.5" not in found and "4.57" not in found and "0.92" not in found


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.name)
def test_no_typed_decimal_outside_generated_sections(path):
    assert not typed_decimals(path.read_text()), (
        f"{path.name} has numbers typed by hand; generate them from the results "
        f"(peerprune/report.py) or say it in words")


def test_the_readme_is_a_front_page():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.encode()) <= 15_000
    for link in ("docs/method.md", "docs/findings.md"):
        assert link in readme and (ROOT / link).is_file()
    assert "METHOD.md" not in readme  # a clone does not contain it


def test_nothing_cites_a_file_a_clone_does_not_contain():
    cited = [p.relative_to(ROOT) for folder in ("peerprune", "notebooks", "docs")
             for p in (ROOT / folder).rglob("*") if p.suffix in (".py", ".ipynb", ".md")
             and "METHOD.md" in p.read_text()]
    assert not cited, f"these cite ../shared/METHOD.md, which a clone lacks: {cited}"


def test_report_regenerates_the_committed_tables_byte_for_byte(tmp_path):
    import shutil
    from peerprune.report import DOCUMENTS, update_documents
    shutil.copytree(ROOT / "results", tmp_path / "results")
    for doc in DOCUMENTS:
        (tmp_path / doc).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / doc, tmp_path / doc)
    for profile in ("full", "quick"):
        assert update_documents(profile, tmp_path / "results", tmp_path) == []
        for table in (ROOT / "results" / profile / "tables").glob("*.md"):
            assert (tmp_path / "results" / profile / "tables" / table.name).read_text() \
                == table.read_text(), f"{profile}/{table.name} is not what report writes"
