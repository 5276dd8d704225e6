"""The reflection cache: exact-prompt answers only, one reflector per file, saved and restored with RL checkpoints."""

from __future__ import annotations

import json

import pytest

from reflectrl.players.reflection_cache import CachedReflector, ReflectionCacheMismatch, reflector_identity


class EchoReflector:
    """Answers with the prompt itself, so a wrong answer names the prompt it was written for."""

    temperature = 0.0

    def __init__(self):
        self.asked: list[list[str]] = []

    def reflect(self, prompts):
        self.asked.append(list(prompts))
        return [f"about<{p}>" for p in prompts]


def test_the_cache_never_serves_a_reflection_for_a_prompt_it_was_not_written_for(tmp_path):
    inner = EchoReflector()
    cached = CachedReflector(inner, tmp_path / "cache.jsonl")
    # Prompts that differ by a prefix, a trailing space or a newline are different prompts.
    prompts = ["Task: a\nReflection:", "Task: a\nReflection: ", "Task: a\nReflection:\n", "Task: a", "task: a\nReflection:", ""]
    for round_ in range(3):
        order = prompts[round_:] + prompts[:round_]
        assert cached.reflect(order + order[:2]) == [f"about<{p}>" for p in order + order[:2]]
    assert inner.asked == [prompts]  # each prompt generated once, in one batch
    reopened = CachedReflector(EchoReflector(), tmp_path / "cache.jsonl")
    assert reopened.reflect(list(reversed(prompts))) == [f"about<{p}>" for p in reversed(prompts)]
    assert (reopened.hits, reopened.misses) == (len(prompts), 0)


def test_a_cache_file_of_another_reflector_is_refused(tmp_path):
    path = tmp_path / "cache.jsonl"
    CachedReflector(EchoReflector(), path, {"reflector": "a", "max_new_tokens": 24}).reflect(["p"])
    assert json.loads(path.read_text().splitlines()[0]) == {"identity": {"max_new_tokens": 24, "reflector": "a"}}
    assert CachedReflector(EchoReflector(), path, {"reflector": "a", "max_new_tokens": 24}).reflect(["p"]) == ["about<p>"]
    for other in ({"reflector": "b", "max_new_tokens": 24}, {"reflector": "a", "max_new_tokens": 48}):
        with pytest.raises(ReflectionCacheMismatch, match="another reflector"):
            CachedReflector(EchoReflector(), path, other)


def test_reflector_identity_follows_the_weights_not_the_folder(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    for folder, content in ((first, b"weights-1"), (second, b"weights-1")):
        folder.mkdir()
        (folder / "adapter_model.safetensors").write_bytes(content)
    assert reflector_identity(str(first), 24) == reflector_identity(str(second), 24)
    (second / "adapter_model.safetensors").write_bytes(b"weights-2")
    assert reflector_identity(str(first), 24) != reflector_identity(str(second), 24)
    assert reflector_identity(str(first), 24) != reflector_identity(str(first), 32)
    assert reflector_identity("smollm2-135m", 24)["reflector"] == "smollm2-135m"


def test_state_round_trips_in_order():
    cached = CachedReflector(EchoReflector())
    cached.reflect(["b", "a", "c"])
    restored = CachedReflector(EchoReflector())
    restored.load_state_dict(json.loads(json.dumps(cached.state_dict())))
    assert restored.state_dict() == cached.state_dict() and len(restored) == 3
    assert restored.reflect(["a"]) == ["about<a>"] and restored.misses == 0


def test_a_cache_cut_inside_a_utf8_character_is_read_and_keeps_growing(tmp_path):
    path = tmp_path / "cache.jsonl"
    identity = {"reflector": "a", "max_new_tokens": 24}
    CachedReflector(EchoReflector(), path, identity).reflect(["café", "naïve"])
    data = path.read_bytes()
    cut = data.rindex("ï".encode()) + 1  # inside the two bytes of "ï" on the last line
    path.write_bytes(data[:cut])
    inner = EchoReflector()
    reopened = CachedReflector(inner, path, identity)  # no UnicodeDecodeError: the torn line is skipped
    assert reopened.reflect(["café", "naïve", "new"]) == ["about<café>", "about<naïve>", "about<new>"]
    assert inner.asked == [["naïve", "new"]]
    # What was appended after the torn line is kept: nothing is asked again.
    third = EchoReflector()
    assert CachedReflector(third, path, identity).reflect(["café", "naïve", "new"]) == ["about<café>", "about<naïve>", "about<new>"]
    assert third.asked == []


@pytest.mark.parametrize("damage", ["cut header", "no header"])
def test_a_cache_without_a_whole_header_is_not_trusted_and_its_lines_are_kept_aside(tmp_path, damage):
    path = tmp_path / "cache.jsonl"
    CachedReflector(EchoReflector(), path, {"reflector": "a", "max_new_tokens": 24}).reflect(["p", "q"])
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[0] = lines[0][:12] + "\n" if damage == "cut header" else ""
    path.write_text("".join(lines), encoding="utf-8")
    damaged = path.read_bytes()

    class OtherReflector(EchoReflector):
        def reflect(self, prompts):
            self.asked.append(list(prompts))
            return [f"other<{p}>" for p in prompts]

    other = OtherReflector()
    cached = CachedReflector(other, path, {"reflector": "b", "max_new_tokens": 24})
    assert cached.reflect(["p", "q"]) == ["other<p>", "other<q>"]  # not reflector a's answers
    assert other.asked == [["p", "q"]]
    assert (tmp_path / "cache.jsonl.untrusted").read_bytes() == damaged
    assert json.loads(path.read_text(encoding="utf-8").splitlines()[0]) == {"identity": {"max_new_tokens": 24, "reflector": "b"}}


def test_a_served_reflectors_cache_from_before_servers_were_recorded_is_set_aside_not_fatal(tmp_path):
    class Served(EchoReflector):
        def served_identity(self):
            return {"server": "http://127.0.0.1/v1", "model": "r", "reported": {"id": "r"}}

    path = tmp_path / "cache.jsonl"
    identity = {"reflector": "served model r", "max_new_tokens": 24}
    CachedReflector(EchoReflector(), path, identity).reflect(["p"])  # the header an older version wrote
    inner = Served()
    assert CachedReflector(inner, path, identity).reflect(["p"]) == ["about<p>"] and inner.asked == [["p"]]
    assert (tmp_path / "cache.jsonl.untrusted").is_file()
    assert json.loads(path.read_text().splitlines()[0])["identity"]["served"]["model"] == "r"
    assert CachedReflector(Served(), path, identity).reflect(["p"]) == ["about<p>"]
    in_memory = CachedReflector(Served(), None, identity)
    assert "served" not in in_memory.identity  # only a file is checked, so the server is not asked
