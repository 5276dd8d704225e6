#!/usr/bin/env bash
# Installs the ALFWorld text engine into ./.venv (run scripts/setup.sh first).
#
# Only the base `alfworld` package and its text stack are installed; its
# `vis`/`full` extras pull ai2thor and CUDA builds of torch, which cannot run
# here. Every package goes in with --no-deps and an explicit list of its light
# dependencies, so that nothing asks the registry for another torch.
#
# Two packages are compiled from source: the PDDL planner
# (fast-downward-textworld, a C++ build of about a minute on two cores) and
# jericho (a small C library that textworld imports). Idempotent: when the
# engine already imports and its planner library is present, nothing is done.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
if [ ! -x "$PY" ] && ! command -v "$PY" >/dev/null; then
  echo "error: $PY not found; run scripts/setup.sh first (or set PYTHON)" >&2
  exit 1
fi

check() {
  "$PY" - <<'EOF' 2>/dev/null
import importlib.util, pathlib
import alfworld.agents.environment.alfred_tw_env  # noqa: F401  the engine and its expert
import textworld.envs.pddl  # noqa: F401
import fast_downward
lib = pathlib.Path(fast_downward.__file__).with_name("libdownward.so")
raise SystemExit(0 if lib.is_file() else 1)
EOF
}

if check; then
  echo "alfworld is already installed ($("$PY" -c 'import alfworld.info as i; print(i.__version__)'))"
  exit 0
fi

start=$(date +%s)
pip() { "$PY" -m pip "$@"; }
# the planner's build script runs `python`: make it this interpreter
PATH="$(cd "$(dirname "$(command -v "$PY")")" && pwd):$PATH"
export PATH
# Light runtime dependencies of textworld 1.7 (its own list, minus jericho's
# spacy, which only jericho's optional text parsing uses).
pip install -q "numpy>=1.24" "tqdm>=4.17.1" "networkx>=2" more_itertools "tatsu==5.8.3" \
  "hashids>=1.2.0" "mementos>=1.3.1" termcolor prompt_toolkit
# jericho and the planner build from source; the planner's build needs cmake,
# which pip fetches into its isolated build environment.
pip install -q --no-deps "jericho==3.3.1"
pip install -q --no-deps "fast-downward-textworld==20.6.4"
pip install -q --no-deps "textworld==1.7.0" "alfworld==0.4.2"

if ! check; then
  echo "error: alfworld was installed but its text engine does not import; see the messages above" >&2
  exit 1
fi
echo "alfworld installed in $(( $(date +%s) - start )) s"
