"""`reflectrl export`: standalone Hugging Face checkpoints (every tied tensor present) and GGUF files."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from typer.testing import CliRunner

from reflectrl.cli.main import app
from reflectrl.models import load_model
from reflectrl.models.tokens import encode_prompt

PROMPTS = 10
NEW_TOKENS = 24


def _greedy(model, tokenizer, prompts: list[str]) -> list[list[int]]:
    """Token ids of each prompt's greedy continuation, one prompt at a time with plain `generate`."""
    out = []
    with torch.no_grad():
        for prompt in prompts:
            ids = torch.tensor([encode_prompt(tokenizer, prompt)])
            new = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW_TOKENS, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
            out.append(new[0, ids.shape[1]:].tolist())
    return out


def _export(tmp_path, *args) -> None:
    result = CliRunner().invoke(app, ["export", *map(str, args)])
    assert result.exit_code == 0, result.output


def test_merged_export_loads_in_plain_transformers_with_the_same_greedy_output(one_thread, tiny_sft_reflector, taxi_reflector_prompts, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    prompts = taxi_reflector_prompts[:PROMPTS]
    assert len(prompts) == PROMPTS
    _export(tmp_path, tiny_sft_reflector, "--out", tmp_path / "merged", "--merge")
    folder = tmp_path / "merged" / "model"
    with safe_open(str(folder / "model.safetensors"), "pt") as saved:
        assert {"model.embed_tokens.weight", "lm_head.weight"} <= set(saved.keys())
        assert not any("lora" in key for key in saved.keys())
    assert not (tmp_path / "merged" / "adapter").exists()
    assert json.loads((tmp_path / "merged" / "export.json").read_text())["merged"] is True

    trained, tokenizer = load_model(tiny_sft_reflector, device="cpu")
    exported = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    exported_tokenizer = AutoTokenizer.from_pretrained(str(folder))
    assert [exported_tokenizer.encode(p) for p in prompts] == [tokenizer.encode(p) for p in prompts]
    expected = _greedy(trained, tokenizer, prompts)
    assert _greedy(exported, exported_tokenizer, prompts) == expected
    with trained.disable_adapter():
        base = _greedy(trained, tokenizer, prompts)
    assert base != expected  # the LoRA matters, so an export that dropped it would fail above


def test_unmerged_export_is_the_base_plus_the_adapter(one_thread, tiny_sft_reflector, taxi_reflector_prompts, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    prompts = taxi_reflector_prompts[:3]
    _export(tmp_path, tiny_sft_reflector, "--out", tmp_path / "lora")
    base = AutoModelForCausalLM.from_pretrained(str(tmp_path / "lora" / "model"), dtype=torch.float32)
    reference, tokenizer = load_model("tiny-random", device="cpu")
    assert all(torch.equal(a, b) for a, b in zip(base.state_dict().values(), reference.state_dict().values()))
    served = PeftModel.from_pretrained(base, str(tmp_path / "lora" / "adapter")).eval()
    trained, _ = load_model(tiny_sft_reflector, device="cpu")
    assert _greedy(served, tokenizer, prompts) == _greedy(trained, tokenizer, prompts)
    # The adapter folder names the exported base, so reflectrl loads it as it is.
    again, _ = load_model(tmp_path / "lora" / "adapter", device="cpu")
    assert _greedy(again, tokenizer, prompts[:1]) == _greedy(trained, tokenizer, prompts[:1])


def test_gguf_export_reads_back_as_the_same_model(one_thread, tiny_sft_reflector, tmp_path):
    """transformers' own GGUF reader undoes the rotary row order and the names, so equal logits mean a faithful file."""
    from transformers import AutoModelForCausalLM

    _export(tmp_path, tiny_sft_reflector, "--out", tmp_path / "g", "--gguf", "--merge")
    path = tmp_path / "g" / "model.gguf"
    assert not (tmp_path / "g" / "adapter.gguf").exists()
    trained, tokenizer = load_model(tiny_sft_reflector, device="cpu")
    read = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()
    ids = torch.tensor([tokenizer.encode("Task: deliver the passenger. Reflection:")])
    with torch.no_grad():
        torch.testing.assert_close(read(ids).logits, trained(ids).logits, atol=1e-4, rtol=0)

    import gguf

    fields = gguf.GGUFReader(str(path)).fields
    assert fields["tokenizer.ggml.pre"].contents() == "smollm" and fields["llama.block_count"].contents() == 2


def _llamacpp_logits(path, token_ids: list[int], lora=None):
    """llama.cpp's float32 logits at every position of `token_ids` (llama-cpp-python, one thread)."""
    from llama_cpp import Llama

    llm = Llama(str(path), lora_path=str(lora) if lora else None, logits_all=True, n_ctx=512, n_threads=1,
                n_threads_batch=1, verbose=False)
    try:
        llm.eval(token_ids)
        return torch.from_numpy(llm.scores[: len(token_ids)].copy())
    finally:
        llm.close()


def test_gguf_export_of_an_adapter_is_the_base_plus_a_llamacpp_lora(one_thread, tiny_sft_reflector, taxi_reflector_prompts, tmp_path):
    """llama.cpp with model.gguf and adapter.gguf (--lora) computes the merged GGUF's and transformers' logits (float32 rounding apart)."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed: pip install 'reflectrl[llamacpp]'")
    import gguf

    _export(tmp_path, tiny_sft_reflector, "--out", tmp_path / "split", "--gguf")
    _export(tmp_path, tiny_sft_reflector, "--out", tmp_path / "merged", "--gguf", "--merge")
    split = tmp_path / "split"
    record = json.loads((split / "export.json").read_text())
    assert record["gguf_adapter"] is True and record["merged"] is False
    fields = gguf.GGUFReader(str(split / "adapter.gguf")).fields
    assert fields["general.type"].contents() == "adapter" and fields["adapter.type"].contents() == "lora"
    assert fields["adapter.lora.alpha"].contents() == 32.0  # peft's lora_alpha: llama.cpp scales by alpha / rank as peft does

    trained, tokenizer = load_model(tiny_sft_reflector, device="cpu")
    for prompt in taxi_reflector_prompts[:3]:
        ids = encode_prompt(tokenizer, prompt)
        with torch.no_grad():
            expected = trained(torch.tensor([ids])).logits[0]
        served = _llamacpp_logits(split / "model.gguf", ids, lora=split / "adapter.gguf")
        # Measured on ~300-token prompts, logits up to ~9: base + LoRA is within 0.006 of the merged GGUF (W x + B A x
        # rounds differently from (W + B A) x), and both are within 0.02 of transformers (llama.cpp's own kernels).
        torch.testing.assert_close(served, _llamacpp_logits(tmp_path / "merged" / "model.gguf", ids), atol=1e-2, rtol=0)
        torch.testing.assert_close(served, expected, atol=5e-2, rtol=0)
        assert (served.argmax(-1) == expected.argmax(-1)).float().mean() >= 0.99
        assert (_llamacpp_logits(split / "model.gguf", ids) - expected).abs().max() > 0.1  # the LoRA matters


def test_bad_exports_are_one_line_errors(tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    runner = CliRunner()
    for args, message in (
        (["tiny-random", "--out", str(tmp_path / "busy")], "not an earlier export"),
        (["tiny-random", "--out", str(tmp_path / "x"), "--gguf", "--gguf-type", "q3"], "unknown GGUF type"),
        ([str(tmp_path / "missing"), "--out", str(tmp_path / "y")], "cannot load"),
    ):
        result = runner.invoke(app, ["export", *args])
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output, result.output
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"
