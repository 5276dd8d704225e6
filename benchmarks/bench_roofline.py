"""Roofline of the main job: each workload's achieved FLOP rate against the machine's matmul rate.

Measures, in one process:

* the matmul rate the machine achieves: a large square `torch.mm` in float32
  and, only where the CPU runs bfloat16 natively (AVX512-BF16 or AMX in
  /proc/cpuinfo), in bfloat16; and float32 at the shape of the model's MLP
  projection over one batch of tokens (hidden size is small, so this is the
  rate its largest matrix products can reach); and the rate at which it reads
  memory (a float32 tensor far larger than the caches, summed once), the
  bound of decoding;
* the workloads of ``reflectrl pipeline taxi --preset cpu`` on the embedded
  default model (`reflectrl.models.EMBEDDED_DEFAULT`) and its real prompts: the
  DangerousTaxi teacher data made as the pipeline's data stage makes it
  (`reflectrl.datagen`, the preset's settings), through the library's own code:

  - one SFT optimizer step per role (reflector, policy, plain): the preset's
    batch size, `trainers.sft.completion_loss` and its backward pass on the
    adapter that `run_warmup` adds, gradient clipping and AdamW, as the
    Trainer's step runs them (its scheduler and logging are left out);
  - one RL update (`trainers.update.PolicyUpdate`, the preset's GRPO settings:
    one epoch, minibatches of 32 steps, micro-batches of 8) on a batch that
    `OnlineTrainer.collect` played with the preset's episodes per iteration,
    the policy reading the teacher's reflections (`teachers.live`), so its
    prompts are those the data's policy rows hold;
  - policy decisions: `LabelPolicy.forward_ids` and `choose` on a batch of the
    data's policy prompts (the RL lockstep batch, by default);
  - reflection: `LocalReflector` on a batch of the data's reflector prompts,
    the prefill (generation of one token) and the decoding of the rest (the
    whole generation minus the prefill), with the preset's reflection budget.

  Both players are LoRA adapters on one base, as in RL: fresh ones (zero B,
  so the base model's outputs, at the adapters' cost) unless `--policy` and
  `--reflector` name trained adapter folders.

For each workload it prints tokens per second and two FLOP rates, each as a
fraction of the float32 matmul rate:

* model FLOPs, the work the workload needs, counted from the model config:
  every row whole (no shared-prefix saving), each real token once (no
  padding), causal attention. A forward pass over a token at position p
  (p + 1 keys) costs 2 W + 2 A + 4 L h d (p + 1), where W is the matrix
  weights of the transformer blocks (attention projections, 3 MLP matrices),
  A the active LoRA adapter's weights, L the layers, h the query heads of
  width d (embedding look-ups cost nothing); projecting a position onto the
  vocabulary V costs 2 H V (SFT's completion positions, every decoding step,
  the prefill's last position; the label head's few rows cost 2 H per label).
  A trained path adds the backward pass: the frozen base needs only the
  activation gradients (once more its forward matmuls), the adapter also its
  weight gradients, attention twice its forward (the gradients of both
  operands of its two products), the frozen head once more: 2 (2 W) + 3 (2 A) +
  3 (attention) + 2 (head) per token, not the usual 6 x params x tokens of
  full fine-tuning. The optimizer's elementwise work is not counted.
* executed FLOPs, the matrix products the code really ran, counted by
  `torch.utils.flop_counter.FlopCounterMode` in a separate run of the same
  workload (matmuls and attention kernels; attention counted over its whole
  masked score matrix, padding included; the shared prompt prefix once per
  batch, or not at all where a kept pass serves it; the RL update's no-grad
  pass for its ratio denominators). Executed / model above 1 is padding and
  recomputation, below 1 the shared prefix.

Timings are medians of `--repeats` runs after a warm-up run (decisions and
reflections then reuse the kept prefix pass, as they do through a run), as
wall time and as the process's CPU time; on a machine shared with other work
the CPU time is the steadier measure, and `--threads 1` keeps a run from
fighting the other work for the cores (the fractions per CPU second are then
those of one core). The load average is printed before
and after. Decoding model FLOPs take every generated token's attention at
the batch's mean context.

Decoding is bound by memory, not by matrix products: each step projects a
batch of single tokens, so it reads every weight once per step (the blocks,
the active adapter, the vocabulary projection) and the KV cache of every row,
for few FLOPs per byte. Its line in a second table gives those bytes per
wall second as a fraction of the memory read rate; steps are the decoder's
single-token passes counted in the timed run, the KV cache read at each at
the batch's mean context.

Usage: python benchmarks/bench_roofline.py [--threads N] [--repeats 3] [--matmul-size 4096]
       [--model SPEC] [--policy ADAPTER] [--reflector ADAPTER] [--quick] [--save benchmarks/results/bench_roofline.txt]
`--quick` (development only) shrinks the data, batches and token budgets; its numbers are not the main job's.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from bench_decide import load_average, timed  # the benchmark's own folder is on sys.path when run as a script
from reflectrl.models import EMBEDDED_DEFAULT, load_model
from reflectrl.models.adapters import load_adapter, lora_parameters
from reflectrl.models.prefix import bare_decoder
from reflectrl.models.tokens import encode_prompts
from reflectrl.pipeline.console import StageLines
from reflectrl.pipeline.plan import SFT_JOBS, rl_config
from reflectrl.pipeline.presets import preset
from reflectrl.pipeline.stage_functions import data_stage
from reflectrl.players import REFLECTOR
from reflectrl.protocol import LabelSet

ENV = "taxi"
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
"""/proc/cpuinfo flags of native bfloat16 arithmetic."""
CPU_ATTENTION = {
    # FlopCounterMode knows the CUDA attention kernels only; the CPU's have the same arithmetic.
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: lambda q, k, v, *_, out_shape=None, **__: sdpa_flop_count(q, k, v),
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward:
        lambda g, q, k, v, *_, out_shape=None, **__: sdpa_backward_flop_count(g, q, k, v),
}


# ------------------------------------------------------------------ machine
def cpuinfo() -> dict[str, str]:
    """The first processor's entries of /proc/cpuinfo (none where there is no such file)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    info = {}
    for line in text.splitlines():
        if not line.strip():
            break
        key, _, value = line.partition(":")
        info[key.strip()] = value.strip()
    return info


class Report:
    """Prints lines and keeps them for `--save`."""

    def __init__(self):
        self.lines: list[str] = []

    def __call__(self, text: str = "") -> None:
        print(text, flush=True)
        self.lines.append(text)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(self.lines) + "\n", encoding="utf-8")


def matmul_rate(m: int, k: int, n: int, dtype: torch.dtype, repeats: int) -> tuple[float, float]:
    """Median FLOP/s of `torch.mm` of [m, k] by [k, n] in `dtype`: (per wall second, per CPU second)."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(m, k, generator=generator).to(dtype)
    b = torch.randn(k, n, generator=generator).to(dtype)
    torch.mm(a, b)  # warm-up: thread pool, kernel selection
    runs = [timed(lambda: torch.mm(a, b))[:2] for _ in range(repeats)]
    flops = 2 * m * k * n
    return flops / statistics.median(w for w, _ in runs), flops / statistics.median(c for _, c in runs)


def read_rate(megabytes: int, repeats: int) -> tuple[float, float]:
    """Median bytes/s of reading a float32 tensor of `megabytes` MiB once (`torch.sum`): (per wall second, per CPU
    second). Far larger than the caches, so it measures memory, not cache, bandwidth."""
    data = torch.ones(megabytes * 2**20 // 4)
    data.sum()  # warm-up: pages touched, thread pool started
    runs = [timed(data.sum)[:2] for _ in range(repeats)]
    size = data.numel() * data.element_size()
    return size / statistics.median(w for w, _ in runs), size / statistics.median(c for _, c in runs)


# ------------------------------------------------------------- model FLOPs
@dataclass(frozen=True)
class ModelShape:
    """What the model FLOP formula reads from a model config (see the module docstring)."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int

    @classmethod
    def of(cls, config) -> ModelShape:
        heads = config.num_attention_heads
        return cls(
            layers=config.num_hidden_layers, hidden=config.hidden_size, heads=heads,
            kv_heads=getattr(config, "num_key_value_heads", None) or heads,
            head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads,
            intermediate=config.intermediate_size, vocab=config.vocab_size,
        )

    @property
    def block_weights(self) -> int:
        """W: the matrix weights of the transformer blocks (Q, K, V, O and three MLP matrices per layer)."""
        attention = self.hidden * self.head_dim * (2 * self.heads + 2 * self.kv_heads)
        return self.layers * (attention + 3 * self.hidden * self.intermediate)

    def flops(self, tokens: int, pairs: int, *, lora: int = 0, head: int = 0, labels: int = 0, train: bool = False) -> float:
        """`tokens` positions with `pairs` (query, key) pairs of attention in all, `head` of them projected onto the
        vocabulary and `labels` label rows; `train` adds the backward pass (see the module docstring)."""
        base = 2 * self.block_weights * tokens
        adapter = 2 * lora * tokens
        attention = 4 * self.layers * self.heads * self.head_dim * pairs
        projection = 2 * self.hidden * (self.vocab * head + labels)
        if train:
            return 2 * base + 3 * adapter + 3 * attention + 2 * projection
        return base + adapter + attention + projection

    def rows(self, lengths, **kwargs) -> float:
        """`flops` of rows of these lengths, each run whole with causal attention."""
        return self.flops(sum(lengths), sum(n * (n + 1) // 2 for n in lengths), **kwargs)


def block_weights_in(model) -> int:
    """The matrix weights of the blocks as the model holds them (the check of `ModelShape.block_weights`)."""
    decoder = model.get_decoder()
    return sum(p.numel() for name, p in decoder.layers.named_parameters() if p.dim() == 2 and "lora_" not in name)


def executed_flops(fn) -> int:
    """The matrix FLOPs `fn` runs, counted by `FlopCounterMode` (see the module docstring)."""
    with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION) as counter:
        fn()
    return counter.get_total_flops()


# ------------------------------------------------------------------ workloads
@dataclass
class Workload:
    """One measured workload."""

    name: str
    rows: int
    tokens: int
    """Real tokens it processes (prompt tokens; generated ones for decoding)."""
    model_flops: float
    executed_flops: float
    wall: float
    cpu: float
    bytes_read: float | None = None
    """Memory-bound workloads (decoding): the bytes their steps must read (see the module docstring)."""
    steps: int = 0
    """Memory-bound workloads: the steps that read them."""


def measure(name: str, run, rows: int, tokens: int, model_flops: float, repeats: int) -> Workload:
    """Warm-up run, a FLOP-counted run, then the median of `repeats` timed runs of `run`."""
    run()
    executed = executed_flops(run)
    times = [timed(run)[:2] for _ in range(repeats)]
    workload = Workload(name, rows, tokens, model_flops, executed, statistics.median(t[0] for t in times),
                        statistics.median(t[1] for t in times))
    print(f"  {name}: {workload.wall:.2f} s wall, {workload.cpu:.2f} s CPU", flush=True)
    return workload


def sample(items: list, count: int, seed: int = 0) -> list:
    """`count` items in a seeded random order (all of them when there are fewer)."""
    order = np.random.default_rng(seed).permutation(len(items))[:count]
    return [items[int(i)] for i in order]


def sft_workloads(the_preset, data: Path, batch_size: int, repeats: int, shape: ModelShape) -> list[Workload]:
    """One optimizer step per role, as `run_warmup`'s Trainer takes it."""
    from reflectrl.trainers.sft import _add_adapter, completion_loss, load_rows, pad_batch, split_rows, tokenize_rows
    from reflectrl.trainers.sft_config import SFTConfig

    results = []
    for _, role, data_file in SFT_JOBS[:3]:
        settings = {**the_preset.sft, **the_preset.sft_by_role.get(role, {}), "batch_size": batch_size}
        config = SFTConfig(role=role, data=str(data / data_file), out="unused", model=the_preset.model,
                           seed=the_preset.train_seed, **settings)
        model, tokenizer = load_model(config.model, dtype=torch.float32, device="cpu")
        train, _ = split_rows(load_rows(config.data, role), config.eval_fraction, config.seed)
        features, _ = tokenize_rows(train, role, tokenizer, LabelSet.for_tokenizer(tokenizer), config.max_length)
        torch.manual_seed(config.seed)
        model = _add_adapter(model, config)
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
        batch = sample(features, config.batch_size, seed=config.seed)
        inputs = pad_batch(batch, tokenizer.pad_token_id)

        def step():
            completion_loss(model, inputs).backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)  # the Trainer's max_grad_norm
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        lengths = [len(f["input_ids"]) for f in batch]
        completions = sum(sum(f["completion_mask"]) for f in batch)
        lora = sum(p.numel() for p in params)
        flops = shape.rows(lengths, lora=lora, head=completions, train=True)
        results.append(measure(f"SFT step, {role} ({len(batch)} rows)", step, len(batch), sum(lengths), flops, repeats))
        del model, optimizer
        gc.collect()
    return results


def rl_workloads(the_preset, args, data: Path, shape: ModelShape) -> tuple[list[Workload], str]:
    """The RL update, the policy's decisions and the reflector's prefill and decoding, on one shared base."""
    from reflectrl.players import LocalReflector, ReflectiveAgent
    from reflectrl.teachers.live import LiveTeacherReflector
    from reflectrl.trainers.recipe import build_rl_run

    config = replace(rl_config(ENV, the_preset), episodes_per_iter=args.rl_episodes, eval_every=0, checkpoint_every=0)
    run = build_rl_run(config, args.policy, None, max_concurrent=config.episodes_per_iter, device="cpu",
                       shuffle_labels=the_preset.shuffle_labels)
    try:
        players, policy = run.players.players, run.players.policy
        lora_r, lora_alpha = the_preset.sft["lora_r"], the_preset.sft["lora_alpha"]
        if args.reflector:
            players.model = load_adapter(players.model, args.reflector, REFLECTOR)
        else:
            players.add_adapter(REFLECTOR, r=lora_r, alpha=lora_alpha)
            for param in lora_parameters(players.model, REFLECTOR):
                param.requires_grad_(False)  # frozen, as a loaded reflector is
        policy_lora = sum(p.numel() for p in lora_parameters(players.model, policy.adapter))
        reflector_lora = sum(p.numel() for p in lora_parameters(players.model, REFLECTOR))
        results = []

        # The RL update, on episodes the policy played reading the teacher's reflections.
        teacher = LiveTeacherReflector(the_preset.data.teacher, ENV, seed=the_preset.seed)
        run.trainer.engine.agent = ReflectiveAgent(teacher, policy, shuffle_labels=the_preset.shuffle_labels,
                                                   label_after=the_preset.label_after, seed=config.seed)
        batch = run.trainer.collect(1, run.trainer.curriculum.level)
        teacher.close()
        steps = [s for e in batch.episodes for s in e.steps if s.action >= 0]
        lengths = [len(s.prompt_ids) for s in steps]
        labels = sum(len(s.label_ids) for s in steps)
        flops = shape.rows(lengths, lora=policy_lora, labels=labels, train=True)
        micro = -(-len(steps) // config.micro_batch_size)
        per_step = max(1, config.minibatch_size // config.micro_batch_size) if config.minibatch_size else micro
        results.append(measure(
            f"RL update ({config.algo}, {len(steps)} steps, {-(-micro // per_step)} optimizer steps)",
            lambda: run.trainer.updater.update(batch, [], 1), len(steps), sum(lengths), flops, args.repeats,
        ))

        # Decisions on the data's policy prompts.
        rows = [json.loads(line) for line in (data / "policy.jsonl").read_text().splitlines()]
        chosen = sample(rows, args.decide_batch)
        prompt_ids = policy.encode([r["prompt"] for r in chosen])
        label_of = dict(zip(policy.label_set.labels, policy.label_set.token_ids))
        label_ids = [[label_of[label] for label in r["labels"]] for r in chosen]

        def decide():
            with torch.no_grad():
                return policy.choose(policy.forward_ids(prompt_ids, label_ids), greedy=True)

        lengths = [len(ids) for ids in prompt_ids]
        flops = shape.rows(lengths, lora=policy_lora, labels=sum(map(len, label_ids)))
        results.append(measure(f"policy decisions (batch {len(chosen)})", decide, len(chosen), sum(lengths), flops, args.repeats))

        # Reflections on the data's reflector prompts: the prefill, then the decoding of the rest.
        rows = [json.loads(line) for line in (data / "reflector.jsonl").read_text().splitlines()]
        prompts = sample(list(dict.fromkeys(r["prompt"] for r in rows)), args.reflect_batch)
        lengths = [len(ids) for ids in encode_prompts(players.tokenizer, prompts)]
        budget = args.reflection_tokens or the_preset.reflection_tokens
        prefill = LocalReflector(players.model, players.tokenizer, adapter=REFLECTOR, reflection_tokens=1)
        whole = LocalReflector(players.model, players.tokenizer, adapter=REFLECTOR, reflection_tokens=budget)
        flops = shape.rows(lengths, lora=reflector_lora, head=len(prompts))
        first = measure(f"reflection prefill (batch {len(prompts)})", lambda: prefill.generate_raw(prompts),
                        len(prompts), sum(lengths), flops, args.repeats)
        steps = []  # the decoder's single-token passes: one per decoding step, for the whole batch
        counter = bare_decoder(players.model).register_forward_hook(
            lambda module, args, kwargs, out: steps.append(1) if kwargs["input_ids"].shape[1] == 1 else None,
            with_kwargs=True,
        )
        try:
            whole.generate_raw(prompts)
        finally:
            counter.remove()
        generated = whole.last_stats["new_tokens"] - len(prompts)  # each row's first token comes with the prefill
        context = statistics.mean(lengths) + budget / 2
        per_token = shape.flops(1, round(context), lora=reflector_lora, head=1)
        both = measure(f"reflection, whole (up to {budget} tokens)", lambda: whole.generate_raw(prompts),
                       len(prompts), generated, flops + generated * per_token, args.repeats)
        results.append(first)
        weight_bytes = next(players.model.parameters()).element_size()
        per_step = weight_bytes * (shape.block_weights + reflector_lora + shape.hidden * shape.vocab
                                   + 2 * shape.layers * shape.kv_heads * shape.head_dim * len(prompts) * context)
        results.append(Workload(
            f"reflection decode (batch {len(prompts)}, up to {budget} tokens)", len(prompts), generated,
            generated * per_token, both.executed_flops - first.executed_flops, both.wall - first.wall, both.cpu - first.cpu,
            bytes_read=len(steps) * per_step, steps=len(steps),
        ))
        described = (f"policy {args.policy}, reflector {args.reflector or 'a fresh LoRA adapter (r ' + str(lora_r) + ')'}; "
                     f"adapter weights: policy {policy_lora / 1e6:.2f}M, reflector {reflector_lora / 1e6:.2f}M")
        return results, described
    finally:
        run.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per workload (default 3; --quick: 1)")
    parser.add_argument("--matmul-size", type=int, default=None, help="n of the n x n matmul (default 4096; --quick: 512)")
    parser.add_argument("--model", default=None, help=f"base model spec (default: the preset's, {EMBEDDED_DEFAULT})")
    parser.add_argument("--policy", default=None, help="policy adapter folder (default: a fresh adapter on the base)")
    parser.add_argument("--reflector", default=None, help="reflector adapter folder (default: a fresh adapter)")
    parser.add_argument("--quick", action="store_true", help="small data, batches and budgets, for development")
    parser.add_argument("--save", type=Path, default=None, help="also write the report to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    the_preset = preset("cpu", ENV)
    if args.model:
        the_preset = replace(the_preset, model=args.model)
    args.policy = args.policy or the_preset.model
    quick = args.quick
    args.repeats = args.repeats or (1 if quick else 3)
    size = args.matmul_size or (512 if quick else 4096)
    data_episodes = 8 if quick else the_preset.data.episodes
    sft_batch = 2 if quick else the_preset.sft["batch_size"]
    args.rl_episodes = the_preset.rl.group_size if quick else the_preset.rl.episodes_per_iter
    args.decide_batch = 4 if quick else the_preset.rl.episodes_per_iter
    args.reflect_batch = 4 if quick else the_preset.rl.episodes_per_iter
    args.reflection_tokens = 8 if quick else None

    report = Report()
    info = cpuinfo()
    native_bf16 = [flag for flag in BF16_FLAGS if flag in info.get("flags", "").split()]
    report(f"command: python benchmarks/bench_roofline.py {' '.join(sys.argv[1:])}".strip())
    report(f"machine: {info.get('model name') or platform.processor() or platform.machine()}, {os.cpu_count()} cores ({platform.machine()}), torch {torch.__version__}, "
           f"{torch.get_num_threads()} threads, CPU kernels {torch.backends.cpu.get_cpu_capability()}, "
           f"native bfloat16: {', '.join(native_bf16) if native_bf16 else 'no'}")
    report(f"date: {datetime.date.today().isoformat()}")
    report(f"load average at the start (1, 5, 15 min): {load_average()}")

    model, _ = load_model(the_preset.model, device="cpu")
    shape = ModelShape.of(model.config)
    held = block_weights_in(model)
    if held != shape.block_weights:
        report(f"warning: the blocks hold {held} matrix weights, the formula counts {shape.block_weights}")
    del model
    report(f"model: {the_preset.model} (float32): {shape.layers} layers, hidden {shape.hidden}, {shape.heads} query and "
           f"{shape.kv_heads} key/value heads of {shape.head_dim}, MLP {shape.intermediate}, vocabulary {shape.vocab}; "
           f"W = {shape.block_weights / 1e6:.1f}M block matrix weights")

    report()
    report(f"matmul rate (torch.mm, median of {max(3, args.repeats)}; GFLOP/s per wall second, per CPU second):")
    rate = matmul_rate(size, size, size, torch.float32, max(3, args.repeats))
    peak, cpu_peak = rate
    report(f"  float32  {size}x{size}x{size}: {rate[0] / 1e9:8.1f}  {rate[1] / 1e9:8.1f}")
    if native_bf16:
        rate = matmul_rate(size, size, size, torch.bfloat16, max(3, args.repeats))
        report(f"  bfloat16 {size}x{size}x{size}: {rate[0] / 1e9:8.1f}  {rate[1] / 1e9:8.1f}  ({rate[0] / peak:.2f}x float32)")
    else:
        report("  bfloat16: not measured (no native bfloat16 on this CPU: it would run as float32 conversions)")
    megabytes = 64 if quick else 1024
    read, cpu_read = read_rate(megabytes, max(3, args.repeats))
    report(f"memory read rate (torch.sum over {megabytes} MiB of float32, median of {max(3, args.repeats)}): "
           f"{read / 1e9:.1f} GB/s per wall second, {cpu_read / 1e9:.1f} per CPU second")
    tokens = 512 if quick else 4096
    rate = matmul_rate(tokens, shape.hidden, shape.intermediate, torch.float32, max(3, args.repeats))
    report(f"  float32  {tokens}x{shape.hidden}x{shape.intermediate} (the MLP's shape): {rate[0] / 1e9:8.1f}  "
           f"{rate[1] / 1e9:8.1f}  ({rate[0] / peak:.2f} of the square rate)")

    with tempfile.TemporaryDirectory(prefix="bench-roofline-") as scratch:
        data = Path(scratch) / "data"
        settings = replace(the_preset, data=replace(the_preset.data, episodes=data_episodes))
        made = data_stage(ENV, settings, StageLines(), data)  # the pipeline's own data stage
        report(f"data: {data_episodes} DangerousTaxi teacher episodes ({the_preset.data.teacher}, level {the_preset.level}, "
               f"horizon {the_preset.horizon}): {made['rows']['reflector']} reflector, {made['rows']['policy']} policy, "
               f"{made['rows']['plain']} plain rows")
        print("SFT steps ...", flush=True)
        workloads = sft_workloads(the_preset, data, sft_batch, args.repeats, shape)
        print("RL update, decisions, reflections ...", flush=True)
        more, players = rl_workloads(the_preset, args, data, shape)
        workloads += more
    report(f"players: {players}")

    report()
    report(f"workloads (median of {args.repeats} after a warm-up; fractions of the float32 {size}^3 matmul rate, "
           f"{peak / 1e9:.1f} GFLOP/s per wall second, {cpu_peak / 1e9:.1f} per CPU second):")
    header = (f"  {'workload':58s} {'tokens':>6s} {'wall s':>7s} {'CPU s':>7s} {'tokens/s':>9s} {'model GF':>8s} "
              f"{'GFLOP/s':>8s} {'of peak':>7s} {'CPU':>6s} {'exec/model':>10s} {'exec':>6s} {'CPU':>6s}")
    report(header)
    for w in workloads:
        executed = w.executed_flops / w.model_flops
        report(f"  {w.name:58s} {w.tokens:6d} {w.wall:7.2f} {w.cpu:7.2f} {w.tokens / w.wall:9.1f} {w.model_flops / 1e9:8.1f} "
               f"{w.model_flops / w.wall / 1e9:8.2f} {w.model_flops / w.wall / peak:7.1%} {w.model_flops / w.cpu / cpu_peak:6.1%} "
               f"{executed:10.2f} {w.executed_flops / w.wall / peak:6.1%} {w.executed_flops / w.cpu / cpu_peak:6.1%}")
    report("  model GF: the workload's model FLOPs (10^9); GFLOP/s: model FLOPs per wall second, 'of peak' over the matmul "
           "rate per wall second, CPU: per CPU second over the matmul rate per CPU second; exec/model: executed FLOPs "
           "(FlopCounterMode) over model FLOPs, exec and its CPU: executed FLOPs as fractions of the matmul rate likewise")
    bound = [w for w in workloads if w.bytes_read]
    if bound:
        report()
        report("memory-bound workloads: the bytes their steps must read (weights once per step, the KV cache of every row) "
               f"per second, as fractions of the memory read rate ({read / 1e9:.1f} GB/s per wall second, "
               f"{cpu_read / 1e9:.1f} per CPU second):")
        report(f"  {'workload':58s} {'steps':>6s} {'MB/step':>8s} {'ms/step':>8s} {'GB/s':>7s} {'of read':>7s} {'CPU':>6s}")
        for w in bound:
            report(f"  {w.name:58s} {w.steps:6d} {w.bytes_read / w.steps / 1e6:8.1f} {1000 * w.wall / w.steps:8.1f} "
                   f"{w.bytes_read / w.wall / 1e9:7.2f} {w.bytes_read / w.wall / read:7.1%} {w.bytes_read / w.cpu / cpu_read:6.1%}")
    report()
    report(f"load average at the end (1, 5, 15 min): {load_average()}")
    if args.save:
        report.save(args.save)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
