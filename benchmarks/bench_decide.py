"""Decision, reflection and memory benchmark of the two players on the embedded default model.

Measures, in one process and on the same batch of DangerousTaxi states:

* the label-head decision (one forward pass, `LabelPolicy`) against
  (a) transformers `generate(max_new_tokens=1, output_scores=True)` and parsing
      the answer, and
  (b) scoring every action string's likelihood separately (one sequence per
      state and action, one batched forward per state), once with the
      vocabulary projection only where the action tokens are and once with the
      plain full-logits call;
* reflector throughput (generated tokens per second) with and without reuse of
  the prompts' shared prefix;
* peak memory (resident set growth in a fresh process) of both players on one
  shared base against two separate models, with the weights of every model
  read into private memory (see `private_weights`).

Timings are medians over interleaved repeats, so a slower moment of a shared
machine affects all methods alike. Both wall-clock time and the process's
CPU time (all threads) are reported; on a machine shared with other work the
CPU time is the steadier measure of cost. On a loaded machine `--threads 1`
keeps a run from fighting the other work for both cores (two spinning thread
pools on two busy cores make every method several times slower, and by
different amounts); the load average is printed before and after.

Usage: python benchmarks/bench_decide.py [--batch 8] [--repeats 5] [--threads N]
       [--save benchmarks/results/bench_decide.txt]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from reflectrl.envs import make_env
from reflectrl.models import EMBEDDED_DEFAULT, add_lora, load_model
from reflectrl.models.embedded import cached_model_folder, embedded_gguf
from reflectrl.models.prefix import left_pad
from reflectrl.models.tokens import encode_prompts
from reflectrl.players import LabelPolicy, LocalReflector, TwoPlayerModel
from reflectrl.protocol import Menu, State, parse_label, policy_prompt, reflector_prompt


def taxi_states(batch: int) -> list[State]:
    """`batch` DangerousTaxi states (full task), some a few oracle steps into their episode."""
    states = []
    for seed in range(batch):
        env = make_env("taxi", level="full")
        _, info = env.reset(seed=seed)
        for _ in range(seed % 3):
            _, _, terminated, truncated, info = env.step(env.oracle_index())
            if terminated or truncated:
                break
        states.append(State.from_info(info))
    return states


def timed(fn):
    """(wall seconds, CPU seconds of this process, result)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def decide_label_head(policy, prompts, menus):
    with torch.no_grad():
        out = policy.distribution(prompts, menus)
        return policy.choose(out, greedy=True).tolist()


def decide_generate(model, tokenizer, prompts, menus):
    ids = encode_prompts(tokenizer, prompts)
    input_ids, mask = left_pad(ids, tokenizer.pad_token_id, model.device)
    with torch.no_grad():
        out = model.generate(
            input_ids=input_ids, attention_mask=mask, max_new_tokens=1, do_sample=False,
            output_scores=True, return_dict_in_generate=True, pad_token_id=tokenizer.pad_token_id,
        )
    answers = tokenizer.batch_decode(out.sequences[:, input_ids.shape[1]:], skip_special_tokens=True)
    return [parse_label(a, m) for a, m in zip(answers, menus)]


def scoring_prefixes(prompts):
    """The policy prompt without its labelled menu, ending in an "Action:" cue."""
    return [p[: p.index("\nActions:\n")] + "\nAction:" for p in prompts]


def decide_per_action(model, tokenizer, prefixes, states, *, all_logits: bool = False):
    """Sum of the action tokens' log-probabilities, one sequence per (state, action).

    By default the vocabulary projection is computed only where the action
    tokens are (`logits_to_keep`); `all_logits=True` is the plain
    ``model(input_ids).logits`` call most scoring code makes.
    """
    choices = []
    with torch.no_grad():
        for prefix, state in zip(prefixes, states):
            prefix_ids = encode_prompts(tokenizer, [prefix])[0]
            action_ids = [tokenizer.encode(" " + a, add_special_tokens=False) for a in state.actions]
            input_ids, mask = left_pad([prefix_ids + a for a in action_ids], tokenizer.pad_token_id, model.device)
            keep = max(len(a) for a in action_ids) + 1
            logits = model(input_ids=input_ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                           logits_to_keep=0 if all_logits else keep).logits[:, -keep:]
            log_probs = torch.log_softmax(logits.float(), -1)
            scores = []
            for row, ids in enumerate(action_ids):
                # logits[:, j] predicts token j+1 of the kept window; the action fills its last len(ids) tokens.
                positions = range(keep - 1 - len(ids), keep - 1)
                scores.append(sum(float(log_probs[row, p, t]) for p, t in zip(positions, ids)))
            choices.append(int(np.argmax(scores)))
    return choices


def load_average() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


MALLOC_SETTINGS = {"MALLOC_MMAP_THRESHOLD_": "1048576", "MALLOC_TRIM_THRESHOLD_": "1048576"}
"""glibc returns blocks over 1 MiB to the system when freed, so RSS follows live memory
instead of whatever the allocator keeps cached (same setting for both configurations)."""


def rss_now() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def rss_peak() -> int:
    """Peak RSS of this process's address space.

    Linux's VmHWM, not `getrusage`'s ru_maxrss: the latter carries over the
    parent's peak through fork/exec, which would hide a child smaller than
    the benchmark process that started it.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def private_weights(model) -> None:
    """Give `model` its own copy of the embedded default's weights, in private memory.

    `from_pretrained` memory-maps the cached safetensors file, so two models
    loaded from it silently share the page cache's single copy, and "two
    separate models" would cost one set of weights. Two separately fine-tuned
    models (full fine-tuning, or LoRA merged into the weights) cannot share;
    so every model in the memory probe, in both configurations, reads its
    weights with `pread` into anonymous memory, tensor by tensor. The mapping's
    pages are never touched, so the copy is never counted twice.
    """
    checkpoint = cached_model_folder(embedded_gguf()) / "model.safetensors"
    from safetensors.torch import load_file

    for name, tensor in load_file(str(checkpoint), backend="pread").items():
        param = model.get_parameter(name)  # tied weights resolve to the one shared parameter
        if param.shape != tensor.shape or param.dtype != tensor.dtype:
            raise RuntimeError(f"{name}: checkpoint {tuple(tensor.shape)} {tensor.dtype}, model {tuple(param.shape)} {param.dtype}")
        param.data = tensor


def memory_probe(mode: str, batch: int, threads: int) -> None:
    """Run in a fresh process: load both players, reflect and decide once, print RSS figures.

    The baseline is taken after everything both configurations need once anyway
    (imports, the tokenizer, one pass of the tiny random model to start the
    thread pools and BLAS buffers), so the growth is what the players cost.
    """
    torch.set_num_threads(threads)
    from reflectrl.models import load_tokenizer

    states = taxi_states(batch)
    tokenizer = load_tokenizer(EMBEDDED_DEFAULT)
    warm_model, _ = load_model("tiny-random", device="cpu")
    LocalReflector(warm_model, tokenizer, reflection_tokens=2).reflect([reflector_prompt(s) for s in states])
    del warm_model
    baseline = rss_now()
    stages = {}
    if mode == "shared":
        players = TwoPlayerModel.load(EMBEDDED_DEFAULT, device="cpu")
        private_weights(players.model)
        players.add_adapter("reflector")
        players.add_adapter("policy")
        reflector, policy = players.local_reflector(reflection_tokens=16), players.label_policy()
    else:
        ref_model, tokenizer = load_model(EMBEDDED_DEFAULT, device="cpu")
        pol_model, _ = load_model(EMBEDDED_DEFAULT, device="cpu")
        private_weights(ref_model)
        private_weights(pol_model)
        reflector = LocalReflector(add_lora(ref_model, "reflector"), tokenizer, adapter="reflector", reflection_tokens=16)
        policy = LabelPolicy(add_lora(pol_model, "policy"), tokenizer, adapter="policy")
    stages["loaded"] = rss_now() - baseline
    stages["loaded_peak"] = rss_peak() - baseline
    reflections = reflector.reflect([reflector_prompt(s) for s in states])
    stages["reflected"] = rss_now() - baseline
    stages["reflected_peak"] = rss_peak() - baseline
    menus = [Menu.build(s.actions, policy.label_set) for s in states]
    decide_label_head(policy, [policy_prompt(s, r, m) for s, r, m in zip(states, reflections, menus)], menus)
    stages["decided"] = rss_now() - baseline
    print(json.dumps({"mode": mode, "baseline_bytes": baseline, "growth_bytes": rss_peak() - baseline, "stages": stages}))


def measure_memory(batch: int, runs: int, threads: int) -> dict:
    """Median (by peak) of `runs` fresh-process probes per configuration, alternating."""
    samples: dict[str, list[dict]] = {"shared": [], "separate": []}
    env = {**os.environ, **MALLOC_SETTINGS}
    for _ in range(runs):
        for mode, collected in samples.items():
            out = subprocess.run(
                [sys.executable, __file__, "--memory-probe", mode, "--batch", str(batch), "--threads", str(threads)],
                capture_output=True, text=True, check=True, env=env,
            )
            collected.append(json.loads(out.stdout.strip().splitlines()[-1]))
    results = {}
    for mode, runs_of_mode in samples.items():
        ordered = sorted(runs_of_mode, key=lambda r: r["growth_bytes"])
        results[mode] = {**ordered[len(ordered) // 2], "all_peaks": [r["growth_bytes"] for r in runs_of_mode]}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--reflect-tokens", type=int, default=32)
    parser.add_argument("--memory-runs", type=int, default=3, help="fresh-process memory probes per configuration")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--save", type=Path, default=None, help="also write the report to this file")
    parser.add_argument("--memory-probe", choices=["shared", "separate"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_probe:
        memory_probe(args.memory_probe, args.batch, torch.get_num_threads())
        return

    lines: list[str] = []

    def report(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    command = "python benchmarks/bench_decide.py " + " ".join(sys.argv[1:])
    report(f"command: {command.strip()}")
    report(f"machine: 2-core CPU ({platform.machine()}), torch {torch.__version__}, {torch.get_num_threads()} threads")
    report(f"date: {datetime.date.today().isoformat()}")
    report(f"load average at the start (1, 5, 15 min): {load_average()}")
    model, tokenizer = load_model(EMBEDDED_DEFAULT, device="cpu")
    policy = LabelPolicy(model, tokenizer)
    states = taxi_states(args.batch)
    report(f"model: {EMBEDDED_DEFAULT} (float32), batch of {len(states)} DangerousTaxi states, "
           f"{min(len(s.actions) for s in states)}-{max(len(s.actions) for s in states)} actions each")

    # Reflector throughput, with and without prefix reuse.
    r_prompts = [reflector_prompt(s) for s in states]
    plain = LocalReflector(model, tokenizer, reflection_tokens=args.reflect_tokens, prefix_reuse=False)
    reuse = LocalReflector(model, tokenizer, reflection_tokens=args.reflect_tokens, prefix_reuse=True)
    reflections = plain.reflect(r_prompts)  # warm-up, and the reflections the policy reads below
    rates = {"without": [], "with": []}
    cpu_rates = {"without": [], "with": []}
    for _ in range(max(2, args.repeats // 2)):
        for name, reflector in (("without", plain), ("with", reuse)):
            wall, cpu, _ = timed(lambda r=reflector: r.generate_raw(r_prompts))
            rates[name].append(reflector.last_stats["new_tokens"] / wall)
            cpu_rates[name].append(reflector.last_stats["new_tokens"] / cpu)
    shared = reuse.last_stats["prefix_tokens"]
    prompt_tokens = reuse.last_stats["prompt_tokens"] / len(states)
    report()
    report(f"reflector, {args.reflect_tokens} new tokens max, prompts {prompt_tokens:.0f} tokens on average, "
           f"shared prefix {shared} tokens (median of {len(rates['with'])}):")
    for name in ("without", "with"):
        report(f"  {name:7s} prefix reuse: {statistics.median(rates[name]):7.1f} generated tokens/s "
               f"({statistics.median(cpu_rates[name]):6.1f} per CPU second)")
    report(f"  speed-up from prefix reuse: {statistics.median(rates['with']) / statistics.median(rates['without']):.2f}x wall, "
           f"{statistics.median(cpu_rates['with']) / statistics.median(cpu_rates['without']):.2f}x CPU")

    # Decisions.
    rng = np.random.default_rng(0)
    menus = [Menu.build(s.actions, policy.label_set, rng) for s in states]
    prompts = [policy_prompt(s, r, m) for s, r, m in zip(states, reflections, menus)]
    prefixes = scoring_prefixes(prompts)
    methods = {
        "label head (one forward pass)": lambda: decide_label_head(policy, prompts, menus),
        "generate(max_new_tokens=1) + parse": lambda: decide_generate(model, tokenizer, prompts, menus),
        "per-action scoring, action logits only": lambda: decide_per_action(model, tokenizer, prefixes, states),
        "per-action scoring, all logits": lambda: decide_per_action(model, tokenizer, prefixes, states, all_logits=True),
    }
    for fn in methods.values():
        fn()  # warm-up
    times = {name: [] for name in methods}
    cpu_times = {name: [] for name in methods}
    answers = {}
    for _ in range(args.repeats):
        for name, fn in methods.items():
            wall, cpu, answers[name] = timed(fn)
            times[name].append(wall)
            cpu_times[name].append(cpu)
    label_tokens = sum(len(ids) for ids in encode_prompts(tokenizer, prompts))
    scoring_tokens = sum(
        (len(encode_prompts(tokenizer, [p])[0]) + 2) * len(s.actions) for p, s in zip(prefixes, states)
    )
    report()
    report(f"decision for the batch (median of {args.repeats}); tokens processed: label head {label_tokens}, "
           f"per-action scoring about {scoring_tokens}")
    base = statistics.median(times["label head (one forward pass)"])
    cpu_base = statistics.median(cpu_times["label head (one forward pass)"])
    for name in methods:
        wall, cpu = statistics.median(times[name]), statistics.median(cpu_times[name])
        report(f"  {name:38s} {wall * 1000:8.0f} ms wall ({wall / base:5.2f}x), {cpu:6.1f} s CPU ({cpu / cpu_base:5.2f}x)")
    report("  (all logits: the plain `model(input_ids).logits` scoring call; action logits only: the same "
           "with `logits_to_keep`, projecting just the action positions onto the vocabulary)")
    parsed = sum(a is not None for a in answers["generate(max_new_tokens=1) + parse"])
    report(f"  generate answers that parse to an action: {parsed}/{len(states)} "
           "(the label head always yields one)")

    # Memory.
    memory = measure_memory(len(states), args.memory_runs, torch.get_num_threads())
    report()
    report(f"peak memory of both players (fresh process per configuration; load, reflect and decide on "
           f"{len(states)} states; every model's weights in private memory, not a shared file mapping; "
           f"RSS growth over a baseline with imports, tokenizer and warm thread pools; "
           f"glibc returns freed blocks over 1 MiB; median of {args.memory_runs} runs):")
    for mode in ("shared", "separate"):
        m = memory[mode]
        stages = ", ".join(f"{k} {v / 2**20:.0f}" for k, v in m["stages"].items() if not k.endswith("_peak"))
        peaks_by_stage = ", ".join(
            f"{k.removesuffix('_peak')} {v / 2**20:.0f}" for k, v in m["stages"].items() if k.endswith("_peak")
        )
        peaks = ", ".join(f"{p / 2**20:.0f}" for p in m["all_peaks"])
        report(f"  {mode:8s}: peak {m['growth_bytes'] / 2**20:6.0f} MiB (all runs: {peaks}); "
               f"peak by the end of: {peaks_by_stage} MiB; resident after: {stages} MiB")
    report(f"  shared / separate, peak: {memory['shared']['growth_bytes'] / memory['separate']['growth_bytes']:.3f}; "
           f"resident after the step: {memory['shared']['stages']['decided'] / memory['separate']['stages']['decided']:.3f}")

    report()
    report(f"load average at the end (1, 5, 15 min): {load_average()}")
    if args.save:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        args.save.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
