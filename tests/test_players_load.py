"""`reflector_from_spec`: every reflector spec becomes its reflector in one place, and the package layering holds."""

import ast
import json
from pathlib import Path

import pytest

from reflectrl.players import CachedReflector, LocalReflector, OpenAIReflector, ServedReflector, reflector_from_spec

SRC = Path(__file__).resolve().parents[1] / "src" / "reflectrl"
ABOVE_THE_PLAYERS = ("serving", "trainers", "evaluation", "pipeline", "cli")


def test_a_served_spec_gives_a_served_reflector_asking_as_many_at_once_as_told():
    reflector = reflector_from_spec("served:http://127.0.0.1:9/v1#mine", reflection_tokens=12, concurrency=3)
    try:
        assert isinstance(reflector, ServedReflector)
        assert (reflector.model, reflector.reflection_tokens, reflector.client.concurrency) == ("mine", 12, 3)
    finally:
        reflector.close()


def test_an_openai_spec_needs_a_model_name_and_a_server(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ValueError, match="name the server's model"):
        reflector_from_spec("openai:", url="http://127.0.0.1:9/v1")
    with pytest.raises(ValueError, match="needs the server URL"):
        reflector_from_spec("openai:chat")
    reflector = reflector_from_spec("openai:chat", url="http://127.0.0.1:9/v1", reflection_tokens=7)
    assert isinstance(reflector, OpenAIReflector)
    assert (reflector.client.model, reflector.client.base_url, reflector.reflection_tokens) == ("chat", "http://127.0.0.1:9/v1", 7)
    reflector.client.close()


def test_a_reflector_on_a_server_never_samples():
    with pytest.raises(ValueError, match="sampled reflections need a local reflector"):
        reflector_from_spec("served:http://127.0.0.1:9/v1#mine", temperature=0.7)


def test_a_cache_file_puts_a_cache_naming_the_reflector_in_front(tmp_path):
    path = tmp_path / "cache.jsonl"
    reflector = reflector_from_spec("tiny-random", reflection_tokens=3, cache_file=path)
    assert isinstance(reflector, CachedReflector) and isinstance(reflector.inner, LocalReflector)
    reflector.reflect(["Task: a\nReflection:"])
    header = json.loads(path.read_text().splitlines()[0])
    assert header == {"identity": {"reflector": "tiny-random", "max_new_tokens": 3}}


def _imports(path: Path, module: str) -> set[str]:
    """Every module `path` imports, at the top or inside functions, relative imports resolved."""
    names = set()
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]) if node.level else ""
            name = ".".join(part for part in (base, node.module) if part)
            names.add(name)
            names.update(f"{name}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("package", ["models", "players"])
def test_models_and_players_import_nothing_above_them_and_no_circle(package):
    modules = {
        f"reflectrl.{package}.{path.stem}": path for path in (SRC / package).glob("*.py") if path.name != "__init__.py"
    }
    graph = {module: _imports(path, module) & set(modules) - {module} for module, path in modules.items()}
    upward = {
        (module, name)
        for module, path in modules.items()
        for name in _imports(path, module)
        if name.split(".")[:2] in (["reflectrl", layer] for layer in ABOVE_THE_PLAYERS)
    }
    assert not upward
    assert not _circle(graph)


def _circle(graph: dict[str, set[str]]) -> list[str]:
    """One import circle of `graph` (depth-first search for a back edge), or []."""
    state: dict[str, str] = {}

    def visit(module: str, trail: list[str]) -> list[str]:
        state[module] = "open"
        for name in sorted(graph[module]):
            if state.get(name) == "open":
                return trail[trail.index(name):] + [name]
            if name not in state and (found := visit(name, trail + [name])):
                return found
        state[module] = "done"
        return []

    for module in sorted(graph):
        if module not in state and (found := visit(module, [module])):
            return found
    return []
