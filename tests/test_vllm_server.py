"""A trained reflector behind a real vLLM server, started and stopped by these tests (issue 19).

vLLM lives in a virtual environment of its own (its pins clash with this
project's); name its python with ``$REFLECTRL_VLLM_PYTHON``. Without it, or
when that python cannot import vllm, the module is skipped with the reason.

vLLM's CPU attention takes head sizes of 32 and more, and the tiny test model's
heads have 16 values, so these tests build their own small random Llama
(2 layers, heads of 32, SmolLM2's tokenizer) and fine-tune a reflector LoRA on
it with `reflectrl sft`, as the llama.cpp tests do on the tiny model. Every
model is float32; the server runs the base checkpoint with the reflector as a
LoRA module and answers raw ``/v1/completions``.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from reflectrl.serving.engines import VLLM_PYTHON_ENV

VLLM_PYTHON = os.environ.get(VLLM_PYTHON_ENV, "").strip()
if not VLLM_PYTHON:
    pytest.skip(f"vLLM is not configured: set ${VLLM_PYTHON_ENV} to the python of a virtual environment with vLLM", allow_module_level=True)
try:
    _probe = subprocess.run([VLLM_PYTHON, "-c", "import vllm"], capture_output=True, text=True, timeout=600)
except (OSError, subprocess.TimeoutExpired) as _err:
    pytest.skip(f"${VLLM_PYTHON_ENV}={VLLM_PYTHON} cannot run: {_err}", allow_module_level=True)
if _probe.returncode != 0:
    _last = (_probe.stderr.strip().splitlines() or ["no output"])[-1]
    pytest.skip(f"${VLLM_PYTHON_ENV}={VLLM_PYTHON} cannot import vllm: {_last}", allow_module_level=True)

from reflectrl.models import load_model  # noqa: E402
from reflectrl.serving.reflector_server import start_reflector_server  # noqa: E402
from served_checks import assert_kill_gives_one_line_and_resume_continues, assert_same_reflections  # noqa: E402
from test_export import NEW_TOKENS, PROMPTS, _export, _greedy  # noqa: E402

STARTUP_S = 1500
"""vLLM's start-up (mostly imports) takes about 40 s on an idle 2-core CPU and over 10 minutes on a busy one."""
SERVER_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
"""1 GiB of KV cache (plenty here, far below vLLM's CPU default); the model runs in the engine's process rather
than in a worker process of its own, which saves a start-up's worth of imports (see `SINGLE_WORKER`)."""
SINGLE_WORKER = ("--distributed-executor-backend", "uni")


@pytest.fixture(scope="module", autouse=True)
def vllm_environment():
    with pytest.MonkeyPatch.context() as patch:
        for key, value in SERVER_ENV.items():
            patch.setenv(key, os.environ.get(key, value))
        yield


@pytest.fixture(scope="module")
def small_llama(tmp_path_factory) -> Path:
    """A seeded 2-layer random Llama with heads of 32 values (vLLM's CPU minimum), saved with SmolLM2's tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    _, tokenizer = load_model("tiny-random", device="cpu")
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=8192, initializer_range=0.2, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
    folder = tmp_path_factory.mktemp("small-llama")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def sft_reflector(small_llama, taxi_reflector_data, tmp_path_factory) -> Path:
    """A reflector adapter made by `reflectrl sft` on `small_llama` (as `tiny_sft_reflector` on the tiny model)."""
    import torch

    from reflectrl.trainers.sft import run_warmup
    from reflectrl.trainers.sft_config import SFTConfig

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("small-sft-reflector")
    config = SFTConfig(
        role="reflector", data=str(taxi_reflector_data / "reflector.jsonl"), out=str(out), model=str(small_llama), max_steps=3,
        batch_size=2, save_steps=3, eval_steps=0, eval_fraction=0.25, max_eval_rows=4, bf16=False, seed=0, learning_rate=2e-2,
    )
    run_warmup(config, show_progress=False)
    return out


def _start(reflector, folder):
    return start_reflector_server(reflector, "vllm", folder, engine_python_path=VLLM_PYTHON, startup_timeout=STARTUP_S,
                                  context=2048, engine_args=SINGLE_WORKER)


def test_served_reflections_equal_the_in_process_ones(one_thread, sft_reflector, taxi_reflector_prompts, tmp_path):
    """Item 4 of issue 19: float32 vLLM (base + the reflector's LoRA) writes the in-process reflections for >= 95%."""
    with _start(sft_reflector, tmp_path / "server") as served:
        command = (tmp_path / "server" / "server.log").read_text().splitlines()[0]
        assert "--enable-lora" in command and f"--lora-modules {served.spec.model}=" in command
        print("vLLM:", assert_same_reflections(sft_reflector, served, taxi_reflector_prompts))


def test_a_server_killed_mid_run_is_one_line_and_resume_continues(one_thread, sft_reflector, tmp_path):
    assert_kill_gives_one_line_and_resume_continues(lambda: _start(sft_reflector, tmp_path / "server"), "vllm", tmp_path / "run")


OFFLINE_GREEDY = textwrap.dedent(
    """
    import json, sys
    from vllm import LLM, SamplingParams
    model, prompts, tokens, out = sys.argv[1], json.load(open(sys.argv[2])), int(sys.argv[3]), sys.argv[4]
    llm = LLM(model=model, dtype="float32", seed=0, max_model_len=2048, distributed_executor_backend="uni")
    answers = llm.generate(prompts, SamplingParams(temperature=0.0, max_tokens=tokens))
    json.dump([list(answer.outputs[0].token_ids) for answer in answers], open(out, "w"))
    """
)


def test_merged_export_loads_in_vllm_with_the_same_greedy_output(one_thread, sft_reflector, taxi_reflector_prompts, tmp_path):
    """Acceptance of issue 19: `reflectrl export --merge` of an SFT reflector, in vLLM's offline `LLM`, float32, greedy."""
    prompts = taxi_reflector_prompts[:PROMPTS]
    _export(tmp_path, sft_reflector, "--out", tmp_path / "merged", "--merge")
    (tmp_path / "prompts.json").write_text(json.dumps(prompts))
    run = subprocess.run(
        [VLLM_PYTHON, "-c", OFFLINE_GREEDY, str(tmp_path / "merged" / "model"), str(tmp_path / "prompts.json"), str(NEW_TOKENS),
         str(tmp_path / "vllm.json")],
        capture_output=True, text=True, timeout=STARTUP_S, env={**os.environ, **SERVER_ENV},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    served = json.loads((tmp_path / "vllm.json").read_text())
    model, tokenizer = load_model(sft_reflector, device="cpu")
    expected = _greedy(model, tokenizer, prompts)
    same = sum(a == b for a, b in zip(served, expected))
    print(f"vLLM offline greedy output: {same}/{len(prompts)} prompts identical to transformers")
    assert served == expected
