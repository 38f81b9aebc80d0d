"""Results: one small JSON file per run, written atomically, read back as a list.

A result follows docs/method.md's "What a result is": task, model, profile, method, distill,
variant, target_sparsity, sparsity, seed, metric, score, scores, heads_per_layer,
params, flops, wall_s, config_hash, plus whatever the run adds.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

RESULTS_DIR = Path(os.environ.get("PEERPRUNE_RESULTS_DIR", "results"))


def config_hash(config: dict) -> str:
    """A short stable hash of a run's configuration (key order does not matter)."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@contextmanager
def atomic_file(path: str | os.PathLike):
    """Yield a temporary file of this process's own beside `path`; when the block ends
    without error it replaces `path` in one rename, so a kill leaves no half file and two
    processes saving the same path at once never write into one file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` through `atomic_file`, synced to disk before the rename."""
    with atomic_file(path) as tmp, open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


@contextmanager
def atomic_dir(path: str | os.PathLike):
    """Yield a fresh temporary folder beside `path`; when the block ends without error, the
    folder replaces `path` in one rename, so a kill leaves no half-written folder.

    Each call writes into its own temporary folder, so two processes saving the same path at
    once (two jobs tokenising one task) never write into each other's files: `path` ends as
    one writer's complete folder (the last to finish, or the one whose rename won a race)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp"))
    try:
        yield tmp
        shutil.rmtree(path, ignore_errors=True)
        try:
            os.rename(tmp, path)
        except OSError:
            if not path.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_rows(path: str | os.PathLike) -> list[dict]:
    """A benchmark's rows (results/*.json at the top level); none if it has not run. A file
    holding one row, the pipeline benchmark's format before it kept rows, is that row."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = json.loads(path.read_text())
    return [rows] if isinstance(rows, dict) else rows


def upsert_row(rows: list[dict], new: dict, key: tuple[str, ...]) -> list[dict]:
    """A benchmark's rows with `new` in place of the row that agrees with it on `key`."""
    return [r for r in rows if any(r.get(k) != new[k] for k in key)] + [new]


def versions() -> dict:
    """What a result's numbers depend on besides its config. CPU weight gradients sum in a
    thread-count-dependent order, so a seed reproduces a score bit for bit only at the same
    torch thread count."""
    import torch
    import transformers
    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "torch_threads": torch.get_num_threads()}


def run_results(profile: str, root=None) -> list[Path]:
    """The result files of a profile's runs (results/<profile>/<model>/<task>/*.json)."""
    return sorted((Path(root or RESULTS_DIR) / profile).glob("*/*/*.json"))


def record_run_all(profile: str, task: str, start, end, results_before, root=None) -> dict:
    """What one `./run_all.sh` cost: wall time, the machine's cores and torch's threads, and
    how many runs it found done and how many it added; results/<profile>/run_all.json."""
    import subprocess

    import torch
    try:  # a copy without git (an archive) records no commit
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip()
    except OSError:
        commit = ""
    record = {"profile": profile, "task": task, "seconds": int(end) - int(start),
              "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
              "runs_before": int(results_before), "runs_after": len(run_results(profile, root)),
              "commit": commit or None}
    write_json(Path(root or RESULTS_DIR) / profile / "run_all.json", record)
    return record


def result_path(result: dict, root: str | os.PathLike | None = None) -> Path:
    """results/<profile>/<model>/<task>/<method>-<distill>-<variant>-s<sparsity>-seed<seed>.json"""
    root = Path(root or RESULTS_DIR)
    model = str(result["model"]).replace("/", "__")
    name = (f"{result['method']}-{result['distill']}-{result['variant']}"
            f"-s{result['target_sparsity']:.2f}-seed{result['seed']}.json")
    return root / result["profile"] / model / result["task"] / name


def distributed_state():
    """Accelerate's process state (one process unless under `accelerate launch`). CPU
    processes count as distributed too, so that exactly one of them writes."""
    import torch
    from accelerate import PartialState
    return PartialState(cpu=not torch.cuda.is_available())


def with_processes(config: dict, processes: int | None = None) -> dict:
    """`config`, plus the process count under data parallelism (this process's, unless
    given): such a run sums gradients in another order, so it is another run (one process
    adds nothing, keeping old hashes)."""
    processes = distributed_state().num_processes if processes is None else processes
    return {**config, "processes": processes} if processes > 1 else config


def is_main_process() -> bool:
    """False in the non-main processes of an `accelerate launch` run: they write nothing."""
    return distributed_state().is_main_process


def save_result(result: dict, root=None) -> Path:
    """Write the result (main process only), then let every process go on together."""
    path = result_path(result, root)
    if is_main_process():
        write_json(path, result)
    distributed_state().wait_for_everyone()
    return path


def load_results(root=None, **where) -> list[dict]:
    """Every result under `root` whose keys equal the given values, sorted by path."""
    root = Path(root or RESULTS_DIR)
    out = []
    for path in sorted(root.rglob("*.json")):
        try:
            r = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None
        if not isinstance(r, dict) or "method" not in r or "task" not in r:
            continue
        if all(r.get(k) == v for k, v in where.items()):
            out.append(r)
    return out


def find_result(config_hash_: str, path: Path) -> dict | None:
    """The stored result at `path` if it was made by the same configuration."""
    if path.is_file():
        r = json.loads(path.read_text())
        if r.get("config_hash") == config_hash_:
            return r
    return None
