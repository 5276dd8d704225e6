"""Load time of the embedded default model: first load into an empty cache, then from the cache.

Each load runs in a fresh Python process with ``REFLECTRL_CACHE`` pointing at
a new temporary folder, so the first load really converts the GGUF file
(tokenizer and weights) and the second reads the cached safetensors. Both the
`load_model` call and the whole process (interpreter start and imports
included) are timed. "Ready" is the time from interpreter start to a usable
model: imports plus `load_model` (the check forward pass afterwards, which
pages the weights in, is not part of loading). Cached loads are repeated
three times in fresh processes and the median is reported.

Usage: python benchmarks/bench_load.py [--save benchmarks/results/bench_load.txt]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROBE = """
import json, time
start = time.perf_counter()
import torch
from reflectrl.models import EMBEDDED_DEFAULT, load_model
imported = time.perf_counter()
model, tokenizer = load_model(EMBEDDED_DEFAULT, device="cpu")
loaded = time.perf_counter()
ids = torch.tensor([tokenizer.encode("The capital of France is")])
with torch.no_grad():
    answer = tokenizer.decode(model(ids).logits[0, -1].argmax())
print(json.dumps({"import_s": imported - start, "load_s": loaded - imported, "answer": answer,
                  "params": sum(p.numel() for p in model.parameters())}))
"""


def run_probe(cache: Path) -> dict:
    env = {**os.environ, "REFLECTRL_CACHE": str(cache), "TOKENIZERS_PARALLELISM": "false"}
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"load probe failed:\n{out.stderr[-2000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process_s"] = wall
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--save", type=Path, default=None, help="also write the report to this file")
    args = parser.parse_args()
    lines = []

    def report(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    import torch

    report(f"command: python benchmarks/bench_load.py {' '.join(sys.argv[1:])}".strip())
    report(f"machine: 2-core CPU ({platform.machine()}), torch {torch.__version__}")
    report(f"date: {datetime.date.today().isoformat()}")
    report(f"load average at the start (1, 5, 15 min): {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="reflectrl-cache-") as cache:
        first = run_probe(Path(cache))
        repeats = sorted((run_probe(Path(cache)) for _ in range(3)), key=lambda r: r["import_s"] + r["load_s"])
        cached = repeats[1]
    report(f"model: smollm2-135m ({first['params'] / 1e6:.0f}M parameters, float32); "
           f"greedy next word after 'The capital of France is': {first['answer'].strip()!r}")
    report("")
    report(f"{'':28s} {'imports':>8s} {'load_model':>11s} {'ready':>7s} {'whole process':>14s}")
    for name, result in (("first load, empty cache", first), ("from the cache (median of 3)", cached)):
        ready = result["import_s"] + result["load_s"]
        result["ready_s"] = ready
        report(f"{name:28s} {result['import_s']:7.1f}s {result['load_s']:10.1f}s {ready:6.1f}s {result['process_s']:13.1f}s")
    report("")
    report("whole process = interpreter start to exit, including a check forward pass that pages the weights in")
    report(f"targets (ready): first load < 60 s {'met' if first['ready_s'] < 60 else 'NOT met'}; "
           f"from the cache < 10 s {'met' if cached['ready_s'] < 10 else 'NOT met'}")
    report(f"load average at the end (1, 5, 15 min): {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if args.save:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        args.save.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
