"""Reading GLUE: the offline copy matches its README; each parsing case on files we write."""
import re

import pytest

from peerprune import glue
from peerprune.glue import TASKS, get_task, load_glue, subsample, tokenize
from peerprune.models import load_tokenizer
from peerprune.results import atomic_dir


def test_a_task_the_local_folder_lacks_comes_from_the_hub_when_it_answers(shared_glue, monkeypatch):
    import datasets
    asked = []

    def fake_hub(name, config):
        asked.append((name, config))
        rows = {"question": ["q"], "sentence": ["s"], "label": [1], "idx": [0]}
        return datasets.DatasetDict({s: datasets.Dataset.from_dict(rows)
                                     for s in ("train", "validation", "test")})
    monkeypatch.setattr(glue.datasets, "load_dataset", fake_hub)
    monkeypatch.setattr(glue, "hub_reachable", lambda timeout=5.0: True)
    qnli = load_glue("qnli", shared_glue)  # QNLI has no train.tsv in the offline copy
    assert asked == [("nyu-mll/glue", "qnli")] and qnli["train"]["question"] == ["q"]
    assert len(load_glue("mrpc", shared_glue)["train"]) == 3668  # complete tasks stay local
    assert asked == [("nyu-mll/glue", "qnli")]


def test_hub_is_not_asked_offline_and_full_adds_hub_tasks_only_when_it_answers(monkeypatch):
    from peerprune.profiles import get_profile
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert glue.hub_reachable() is False
    full = get_profile("full")
    assert full.runnable_tasks() == ("rte", "mrpc", "stsb", "cola", "sst2", "wnli")
    monkeypatch.setattr(glue, "hub_reachable", lambda timeout=5.0: True)
    assert full.runnable_tasks()[-3:] == ("qnli", "qqp", "mnli")
    assert get_profile("quick").runnable_tasks() == ("mrpc",)


def readme_counts(path):
    """{task: (train, dev)} from the table in the GLUE folder's README."""
    counts = {}
    for line in (path / "README.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) >= 3 and re.fullmatch(r"[\d,]+", cells[1]) and re.fullmatch(r"[\d,]+", cells[2]):
            counts[cells[0]] = tuple(int(c.replace(",", "")) for c in cells[1:3])
    return counts


def test_offline_copy_row_counts_match_its_readme(shared_glue):
    counts = readme_counts(shared_glue)
    assert len(counts) >= 6, counts
    by_folder = {t.folder: t.name for t in TASKS.values()}
    for folder, (n_train, n_dev) in counts.items():
        data = load_glue(by_folder[folder], shared_glue)
        assert (len(data["train"]), len(data["validation"])) == (n_train, n_dev), folder


def test_offline_copy_labels(shared_glue):
    mrpc = load_glue("mrpc", shared_glue)["train"]
    labels = mrpc["label"]
    assert (labels.count(1), labels.count(0)) == (2474, 1194)  # the README's split
    stsb = load_glue("stsb", shared_glue)["validation"]
    assert 0.0 <= min(stsb["label"]) and max(stsb["label"]) <= 5.0


def test_qnli_has_no_train_split_and_says_what_exists(shared_glue, monkeypatch):
    monkeypatch.setattr(glue, "hub_reachable", lambda timeout=5.0: False)
    with pytest.raises(FileNotFoundError, match=r"QNLI/train.tsv.*cola, sst2, mrpc"):
        load_glue("qnli", shared_glue)
    assert len(load_glue("qnli", shared_glue, splits=("validation",))["validation"]) == 5463


def write(path, text, bom=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())


@pytest.fixture()
def fake_glue(tmp_path):
    """A small GLUE-layout folder with a byte-order mark, literal quotes and CoLA's headless rows."""
    write(tmp_path / "MRPC/train.tsv",
          "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
          '1\t1\t2\tHe said " hi " .\tHe said "hi".\n'
          "0\t3\t4\tA cat .\tA dog .\n", bom=True)
    write(tmp_path / "MRPC/dev.tsv", "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
          "0\t5\t6\tx\ty\n", bom=True)
    write(tmp_path / "CoLA/train.tsv", "gj04\t1\t\tGood sentence .\ngj04\t0\t*\tSentence good \"a .\n")
    write(tmp_path / "CoLA/dev.tsv", "gj04\t1\t\tAnother one .\n")
    write(tmp_path / "RTE/train.tsv", "index\tsentence1\tsentence2\tlabel\n"
          "0\tA.\tB.\tentailment\n1\tC.\tD.\tnot_entailment\n")
    write(tmp_path / "RTE/dev.tsv", "index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\tentailment\n")
    write(tmp_path / "STS-B/train.tsv", "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2"
          "\tsentence1\tsentence2\tscore\n0\tg\tf\ty\t0\tn\tn\tA man.\tA guy.\t4.5\n")
    write(tmp_path / "STS-B/dev.tsv", "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2"
          "\tsentence1\tsentence2\tscore\n0\tg\tf\ty\t0\tn\tn\tA.\tB.\t0.25\n")
    return tmp_path


def test_bom_and_literal_quotes(fake_glue):
    d = load_glue("mrpc", fake_glue)["train"]
    assert d.column_names == ["sentence1", "sentence2", "label", "idx"]
    assert d[0]["sentence1"] == 'He said " hi " .' and d[0]["sentence2"] == 'He said "hi".'
    assert d["label"] == [1, 0]
    assert d.features["label"].names == ["not_equivalent", "equivalent"]


def test_cola_without_header(fake_glue):
    d = load_glue("cola", fake_glue)["train"]
    assert d["sentence"] == ["Good sentence .", 'Sentence good "a .']
    assert d["label"] == [1, 0]


def test_string_labels_and_regression(fake_glue):
    assert load_glue("rte", fake_glue)["train"]["label"] == [0, 1]  # the Hub's ids
    assert load_glue("stsb", fake_glue)["validation"]["label"] == [0.25]


def test_same_columns_as_the_hub_for_every_task():
    # The Hub's nyu-mll/glue schema: text columns, label, idx.
    hub = {"cola": ["sentence"], "sst2": ["sentence"], "mrpc": ["sentence1", "sentence2"],
           "stsb": ["sentence1", "sentence2"], "qqp": ["question1", "question2"],
           "mnli": ["premise", "hypothesis"], "qnli": ["question", "sentence"],
           "rte": ["sentence1", "sentence2"], "wnli": ["sentence1", "sentence2"]}
    assert {n: list(t.text_columns) for n, t in TASKS.items()} == hub
    assert get_task("mnli").eval_splits == ("validation_matched", "validation_mismatched")
    assert get_task("stsb").num_labels == 1 and get_task("mnli").num_labels == 3


def test_malformed_row_names_file_and_line(fake_glue):
    write(fake_glue / "RTE/train.tsv", "index\tsentence1\tsentence2\tlabel\n"
          "0\tA.\tB.\tentailment\n1\tonly two columns\n")
    with pytest.raises(ValueError, match=r"RTE/train.tsv, line 3: expected 4"):
        load_glue("rte", fake_glue)


def test_unknown_label_names_file_and_line(fake_glue):
    write(fake_glue / "RTE/dev.tsv", "index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\tmaybe\n")
    with pytest.raises(ValueError, match=r"RTE/dev.tsv, line 2: label 'maybe'"):
        load_glue("rte", fake_glue)


def test_missing_file_lists_what_the_folder_has(fake_glue):
    with pytest.raises(FileNotFoundError, match=r"WNLI/train.tsv.*cola, mrpc, stsb, rte"):
        load_glue("wnli", fake_glue)


def test_unknown_task_lists_valid_ones():
    with pytest.raises(ValueError, match=r"unknown GLUE task 'mnli-mm'.*cola, sst2"):
        get_task("mnli-mm")


def test_glue_dir_from_environment(fake_glue, monkeypatch):
    monkeypatch.setenv(glue.GLUE_DIR_ENV, str(fake_glue))
    assert len(load_glue("rte")["train"]) == 2


def test_tokenize_and_seeded_subsample(fake_glue):
    tok = load_tokenizer("tiny")
    d = load_glue("mrpc", fake_glue)["train"]
    t = tokenize(d, tok, "mrpc", max_length=8)
    assert set(t.column_names) == {"labels", "input_ids", "token_type_ids", "attention_mask"}
    assert max(len(x) for x in t["input_ids"]) <= 8
    big = load_glue("rte", fake_glue)["train"]
    assert subsample(big, 1, seed=3)["idx"] == subsample(big, 1, seed=3)["idx"]
    assert len(subsample(big, None)) == 2 and len(subsample(big, 10)) == 2


def test_tokenised_splits_are_cached(fake_glue, tmp_path, monkeypatch):
    tok = load_tokenizer("tiny")
    first, first_evals = glue.task_data("rte", tok, glue_dir=fake_glue, max_length=16,
                                        cache_dir=tmp_path / "cache")

    def fail(*a, **k):
        raise AssertionError("tokenised again")
    monkeypatch.setattr(glue, "tokenize", fail)
    again, again_evals = glue.task_data("rte", tok, glue_dir=fake_glue, max_length=16,
                                        cache_dir=tmp_path / "cache")
    assert again["input_ids"] == first["input_ids"] and again["labels"] == first["labels"]
    assert again_evals["validation"]["input_ids"] == first_evals["validation"]["input_ids"]
    with pytest.raises(AssertionError, match="tokenised again"):  # another length, another key
        glue.task_data("rte", tok, glue_dir=fake_glue, max_length=8, cache_dir=tmp_path / "cache")


def test_two_writers_of_one_cache_folder_do_not_mix(tmp_path):
    """Two jobs tokenising the same task save the same cache folder at once: each writes its
    own temporary folder, and the cache ends as one writer's complete folder, no leftovers."""
    target = tmp_path / "cache" / "rte-key"
    with atomic_dir(target) as first:
        (first / "train").write_text("first")
        with atomic_dir(target) as second:
            assert second != first
            (second / "train").write_text("second")
        assert (target / "train").read_text() == "second"
        (first / "validation").write_text("first")
    assert {p.name: p.read_text() for p in target.iterdir()} == {"train": "first",
                                                                  "validation": "first"}
    assert [p.name for p in target.parent.iterdir()] == ["rte-key"]
