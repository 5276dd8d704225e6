"""Loading specs, the embedded-model cache and the BOS convention."""

import pytest
import torch

from reflectrl.models import (
    EMBEDDED_DEFAULT,
    ModelLoadError,
    embedded,
    encode_prompt,
    load_model,
    load_tokenizer,
    token_counter,
)
from reflectrl.models.loading import prepare_tokenizer, resolve_dtype
from reflectrl.models.tokens import encode_prompts, leading_special_ids


def test_tiny_random_is_seeded_and_ready_for_batching(tiny_model):
    model, tokenizer = tiny_model
    again, _ = load_model("tiny-random")
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters()))
    assert tokenizer.padding_side == "left" and tokenizer.pad_token_id is not None
    assert model.name_or_path == "tiny-random" and not model.training
    assert model.dtype == torch.float32 and model.config.vocab_size == len(tokenizer)


def test_dtype_and_device_choice():
    assert resolve_dtype(None, torch.device("cpu")) == torch.float32
    assert resolve_dtype(None, torch.device("cuda")) == torch.bfloat16
    assert resolve_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_dtype("int3", torch.device("cpu"))
    model, _ = load_model("tiny-random", dtype="bfloat16", device="cpu")
    assert model.dtype == torch.bfloat16
    with pytest.raises(ModelLoadError, match="device"):
        load_model("tiny-random", device="no-such-device")


def test_a_saved_model_loads_without_hub_kernels(tiny_model, tmp_path):
    # With the `kernels` package installed, transformers' default would swap layers for kernels it downloads
    # when the model runs on a GPU (offline: a failure in the middle of SFT).
    model, tokenizer = tiny_model
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded, _ = load_model(tmp_path, device="cpu")
    assert loaded.use_kernels is False
    loaded.train()
    assert loaded.use_kernels is False


@pytest.mark.parametrize("spec", ["", "   ", None])
def test_empty_specs_are_refused(spec):
    with pytest.raises(ModelLoadError, match="non-empty"):
        load_model(spec)


def test_a_folder_that_is_no_model_gives_a_clear_error(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ModelLoadError, match="cannot load"):
        load_model(tmp_path)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"base_model_name_or_path": null}')
    with pytest.raises(ModelLoadError, match="base model"):
        load_model(adapter)


def test_bos_convention(tiny_model):
    _, tokenizer = tiny_model
    text = "Task: go\nAction label:\n"
    assert leading_special_ids(tokenizer) == []  # SmolLM2 adds no BOS
    assert encode_prompt(tokenizer, text) == tokenizer.encode(text, add_special_tokens=False)
    with_bos = load_tokenizer("tiny-random")
    with_bos.add_bos_token = True  # like Llama-2 / Mistral tokenizers
    assert leading_special_ids(with_bos) == [with_bos.bos_token_id]
    ids = encode_prompt(with_bos, text)
    assert ids[0] == with_bos.bos_token_id and ids[1:] == tokenizer.encode(text, add_special_tokens=False)
    assert encode_prompts(with_bos, [text, "x"])[0] == ids
    assert token_counter(with_bos)(text) == len(ids)


def test_prepare_tokenizer_adds_padding(tiny_model):
    _, tokenizer = tiny_model
    tokenizer.pad_token = None
    tokenizer.padding_side = "right"
    prepare_tokenizer(tokenizer)
    assert tokenizer.pad_token == tokenizer.eos_token and tokenizer.padding_side == "left"


def test_conversion_cache_round_trip_and_atomicity(tiny_model, tmp_path, monkeypatch):
    """The GGUF conversion path, with the tiny model standing in for the slow GGUF read."""
    model, tokenizer = tiny_model
    monkeypatch.setenv(embedded.CACHE_ENV, str(tmp_path / "cache"))
    fake_gguf = tmp_path / "weights" / "Tiny.Q4.gguf"
    fake_gguf.parent.mkdir()
    fake_gguf.write_bytes(b"GGUF")
    monkeypatch.setattr(embedded, "load_gguf_model", lambda gguf: model)

    def killed(model, folder):
        (folder / "config.json").write_text("{}")
        raise KeyboardInterrupt  # the user pressed Ctrl-C half-way through the first load

    monkeypatch.setattr(embedded, "save_standalone", killed)
    with pytest.raises(KeyboardInterrupt):
        embedded.cached_model_folder(fake_gguf)
    conversion = embedded.conversion_folder(fake_gguf)
    assert not (conversion / "model-v2").exists()
    assert list(conversion.iterdir()) == []  # no half-written temporary folder either

    monkeypatch.undo()
    monkeypatch.setenv(embedded.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(embedded, "load_gguf_model", lambda gguf: model)
    folder = embedded.cached_model_folder(fake_gguf)
    assert folder == conversion / "model-v2" and folder.is_relative_to(tmp_path / "cache")
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    with safe_open(str(folder / "model.safetensors"), "pt") as saved:
        # Tied weights under both names: loaders other than transformers (vLLM) do not re-tie them.
        assert {"model.embed_tokens.weight", "lm_head.weight"} <= set(saved.keys())
        assert torch.equal(saved.get_tensor("model.embed_tokens.weight"), saved.get_tensor("lm_head.weight"))

    reloaded = AutoModelForCausalLM.from_pretrained(str(folder))
    ids = torch.tensor([tokenizer.encode("hello")])
    assert all(torch.equal(a, b) for a, b in zip(reloaded.state_dict().values(), model.state_dict().values()))
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids).logits, model(ids).logits, atol=1e-5, rtol=0)
    monkeypatch.setattr(embedded, "load_gguf_model", lambda gguf: pytest.fail("cache not used"))
    assert embedded.cached_model_folder(fake_gguf) == folder


def test_cache_location_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("REFLECTRL_CACHE", str(tmp_path / "c"))
    assert embedded.cache_root() == tmp_path / "c"
    monkeypatch.delenv("REFLECTRL_CACHE")
    assert embedded.cache_root().name == "reflectrl"


@pytest.mark.slow
def test_embedded_default_loads_and_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("REFLECTRL_CACHE", str(tmp_path))
    model, tokenizer = load_model(EMBEDDED_DEFAULT, device="cpu")
    assert type(model).__name__ == "LlamaForCausalLM" and model.config.vocab_size == 49152
    assert not hasattr(model.config, "quantization_config") or model.config.quantization_config is None
    ids = torch.tensor([tokenizer.encode("The capital of France is")])
    with torch.no_grad():
        first = model(ids).logits
    assert tokenizer.decode(first[0, -1].argmax()).strip() == "Paris"
    cached, _ = load_model(EMBEDDED_DEFAULT, device="cpu")
    with torch.no_grad():
        assert torch.equal(cached(ids).logits, first)
    assert any((tmp_path / "gguf").iterdir())
