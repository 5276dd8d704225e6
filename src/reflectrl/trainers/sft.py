"""Warm-up SFT of the reflector, the policy or the plain baseline on teacher data.

Built on transformers' `Trainer` (checkpoints, resume, evaluation, the
progress bar and tensorboard logging come from it) rather than TRL's
`SFTTrainer`, for two reasons measured on CPU:

* we tokenize the rows ourselves, with the project's BOS convention
  (`reflectrl.models.tokens`) and the label token ids of
  `LabelSet.for_tokenizer`, so training sees exactly the ids the policy and
  reflector see at rollout time;
* the loss projects only the completion positions through the LM head
  (`CompletionOnlyTrainer.compute_loss`). A policy row has one completion
  token among ~400, and the full-vocabulary logits of every position that a
  stock causal-LM loss computes cost more time and memory than the rest.

What it does:

* loss on the completion only: the label token (policy, plain) or the
  reflection plus EOS (reflector);
* LoRA by default (optionally on the top `lora_layers` blocks only, which
  also skips the backward pass below them), full fine-tuning with ``full=True``;
* a held-out slice of whole episodes (never rows of a training episode) for
  the eval loss and, for policy/plain, the held-out label accuracy: argmax of
  `LabelPolicy` over the row's own menu labels;
* periodic checkpoints under ``OUT/checkpoints``, each recording the run it
  belongs to, ``resume=True`` continues from the last complete one (and of a
  run that trained all its steps returns the result); a finished run is only
  replaced with ``overwrite=True``; tensorboard logs under ``OUT/logs``, and the
  other trackers of ``report_to`` through transformers' integrations
  (`reflectrl.trainers.trackers`);
* output: ``OUT`` is a standard PEFT adapter folder (``load_model(OUT)`` or
  ``PeftModel.from_pretrained``), or a full model folder with ``full=True``,
  plus ``OUT/warmup_config.json`` (the exact settings) and ``OUT/metrics.json``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from reflectrl.run_settings import ConfigMismatch, as_saved, changed_settings, read_saved
from reflectrl.storage import atomic_files, atomic_write_json, recover_folder
from reflectrl.trainers.sft_config import SFTConfig
from reflectrl.trainers.trackers import RunTrackers

CONFIG_FILE = "warmup_config.json"
METRICS_FILE = "metrics.json"
CHECKPOINTS = "checkpoints"
LOGS = "logs"
IDENTITY_FILE = "run_identity.json"
"""In every checkpoint: the settings of the run that wrote it (`run_identity`), so that a resume can refuse
another run's checkpoints even when OUT/warmup_config.json is gone."""
DATA_DIGEST = "data_sha256"
"""Key of the data file's content hash in OUT/warmup_config.json."""
RESULT_FILES = (METRICS_FILE, "adapter_config.json", "adapter_model.safetensors", "model.safetensors")
"""What a run writes into OUT when it ends: any of them marks a finished run."""


class WarmupError(ValueError):
    """The SFT settings or data cannot work (the message says why)."""


@dataclass
class WarmupResult:
    """What `run_warmup` produced."""

    out: Path
    metrics: dict[str, Any]


# ----------------------------------------------------------------------------- data
def load_rows(path: str | os.PathLike, role: str) -> list[dict[str, Any]]:
    """Rows of a gen-data JSONL file, checked for the columns `role` needs."""
    from datasets import load_dataset

    try:
        data = load_dataset("json", data_files=str(path), split="train")
    except Exception as err:  # datasets raises many kinds of errors for a bad file
        raise WarmupError(f"cannot read {path} as JSON lines: {str(err).splitlines()[0] if str(err) else type(err).__name__}") from err
    needed = {"prompt", "completion"} | ({"labels"} if role != "reflector" else set())
    missing = needed - set(data.column_names)
    if missing:
        raise WarmupError(f"{path} lacks the columns {sorted(missing)} that a {role} dataset needs (was it made for another role?)")
    if len(data) == 0:
        raise WarmupError(f"{path} has no rows")
    rows = data.to_list()
    if role != "reflector":
        # Evaluation looks the label up in the row's menu, and that happens only once training has started.
        for number, row in enumerate(rows, 1):
            if not isinstance(row["labels"], list) or row["completion"] not in row["labels"]:
                raise WarmupError(f"{path} row {number}: label {row['completion']!r} is not on its menu {row['labels']}")
    return rows


def split_rows(rows: list[dict[str, Any]], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(train, held-out): whole episodes go to one side, chosen by a seeded shuffle of the episode seeds."""
    keys = [row.get("seed", i) for i, row in enumerate(rows)]
    unique = sorted(set(keys), key=str)
    order = np.random.default_rng(seed).permutation(len(unique))
    held = max(1, round(fraction * len(unique)))
    if held >= len(unique):
        raise WarmupError(f"only {len(unique)} episodes in the data: too few to hold some out")
    held_keys = {unique[i] for i in order[:held]}
    train = [r for r, k in zip(rows, keys) if k not in held_keys]
    evaluation = [r for r, k in zip(rows, keys) if k in held_keys]
    return train, evaluation


def tokenize_rows(
    rows: list[dict[str, Any]], role: str, tokenizer, label_set, max_length: int
) -> tuple[list[dict], list[dict[str, Any]]]:
    """``input_ids`` + ``completion_mask`` of the rows that fit in `max_length`, and those rows."""
    from reflectrl.models.tokens import encode_prompts

    prompts = encode_prompts(tokenizer, [r["prompt"] for r in rows])
    label_id = dict(zip(label_set.labels, label_set.token_ids))
    out, kept = [], []
    for row, prompt_ids in zip(rows, prompts):
        if role == "reflector":
            completion = list(tokenizer.encode(row["completion"], add_special_tokens=False))
            if tokenizer.eos_token_id is not None:
                completion.append(int(tokenizer.eos_token_id))  # teaches the reflector to stop
        else:
            foreign = [label for label in dict.fromkeys([row["completion"], *row["labels"]]) if label not in label_id]
            if foreign:
                raise WarmupError(
                    f"labels {foreign} are not single-token labels of this tokenizer; generate the data with the same --model"
                )
            completion = [label_id[row["completion"]]]
        ids = list(prompt_ids) + completion
        if len(ids) > max_length:
            continue
        out.append({"input_ids": ids, "completion_mask": [0] * len(prompt_ids) + [1] * len(completion)})
        kept.append(row)
    return out, kept


# ----------------------------------------------------------------------- evaluation
def evaluate_labels(
    model, tokenizer, label_set, rows: list[dict[str, Any]], batch_size: int = 8, bf16: bool = False
) -> dict[str, float]:
    """Held-out ``eval_loss`` (cross-entropy of the label token) and ``label_accuracy`` in one pass.

    Both come from `LabelPolicy.label_log_probs`, so accuracy is the share of
    rows whose completion label is the policy's greedy choice over the row's
    own menu labels.
    """
    import torch

    from reflectrl.players.policy import LabelPolicy

    if not rows:
        return {"eval_loss": float("nan"), "label_accuracy": float("nan")}
    label_id = dict(zip(label_set.labels, label_set.token_ids))
    # Without prefix reuse the held-out numbers stay bit-identical to those of runs made before it.
    policy = LabelPolicy(model, tokenizer, label_set, prefix_reuse=False, bf16=bf16)
    correct, loss_sum = 0, 0.0
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(rows), batch_size):
                batch = rows[start : start + batch_size]
                menus = [[label_id[x] for x in row["labels"]] for row in batch]
                log_probs = policy.label_log_probs(policy.encode([r["prompt"] for r in batch]), menus)
                for row, lp in zip(batch, log_probs):
                    correct += int(row["labels"][int(lp.argmax())] == row["completion"])
                    loss_sum -= float(lp[row["labels"].index(row["completion"])])
    finally:
        model.train(was_training)
    return {"eval_loss": loss_sum / len(rows), "label_accuracy": correct / len(rows)}


def label_accuracy(
    model, tokenizer, label_set, rows: list[dict[str, Any]], batch_size: int = 8, bf16: bool = False
) -> float:
    """Share of rows whose completion label is the argmax over the row's own menu labels."""
    return evaluate_labels(model, tokenizer, label_set, rows, batch_size, bf16)["label_accuracy"]


def baseline_accuracies(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Accuracy of guessing uniformly, and of always naming the most common oracle action."""
    if not rows:
        return {}
    chance = float(np.mean([1.0 / len(r["labels"]) for r in rows]))
    actions = [r.get("oracle_action") for r in rows]
    majority = max(actions.count(a) for a in set(actions)) / len(actions)
    return {"chance_accuracy": round(chance, 4), "majority_action_accuracy": round(majority, 4)}


# ---------------------------------------------------------------------- checkpoints
def complete_checkpoints(folder: Path) -> list[Path]:
    """Checkpoint folders whose trainer state was fully written (it is written last), oldest first."""
    found = []
    for path in folder.glob("checkpoint-*"):
        try:
            step = _checkpoint_step(path)
            json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
        except (ValueError, OSError):
            continue
        found.append((step, path))
    return [p for _, p in sorted(found)]


def _checkpoint_step(path: Path) -> int:
    return int(path.name.split("-", 1)[1])


def _drop_incomplete_checkpoints(folder: Path) -> None:
    complete = set(complete_checkpoints(folder))
    for path in folder.glob("checkpoint-*"):
        if path not in complete:
            shutil.rmtree(path, ignore_errors=True)


def _data_digest(path: str | os.PathLike) -> str:
    """What identifies a data file: its content, so that a moved or copied file is the same data."""
    from reflectrl.trainers.checkpoint import file_sha256

    return file_sha256(path)


def _resolved_spec(spec: str) -> str:
    return str(Path(spec).resolve()) if Path(spec).exists() else spec


def run_identity(config: SFTConfig, digest: str) -> dict[str, Any]:
    """The settings a checkpoint belongs to, as they compare by meaning: the data by its content `digest`, a
    model folder by its resolved path, and none of the settings a resume may change (the folder itself among them)."""
    identity = as_saved({k: v for k, v in asdict(config).items() if k not in SFTConfig.RESUMABLE})
    identity.update(data=digest, model=_resolved_spec(config.model))
    if config.init_adapter is not None:
        from reflectrl.players.reflection_cache import adapter_content_identity

        # By content: a moved run folder still resumes, an adapter retrained in place does not.
        identity["init_adapter"] = adapter_content_identity(config.init_adapter)
    return identity


def _saved_identity(saved: dict[str, Any], config: SFTConfig, digest: str) -> dict[str, Any]:
    """`run_identity` of a saved warmup_config.json; settings added since it was written take their defaults."""
    known = {f.name for f in fields(SFTConfig)}
    newer = {k: v for k, v in saved.items() if k not in known and k != DATA_DIGEST}  # unknown here: always a change
    try:
        before = SFTConfig(**{k: v for k, v in saved.items() if k in known})
    except TypeError:  # role, data or out missing: not a config this code wrote
        return saved
    if before.init_adapter is not None and config.init_adapter is not None and not Path(before.init_adapter).is_dir():
        # The run folder moved with its starting adapter: the checkpoints' own record compares its content.
        before = replace(before, init_adapter=config.init_adapter)
    if DATA_DIGEST in saved:
        saved_digest = saved[DATA_DIGEST]
    elif Path(before.data).resolve() == Path(config.data).resolve():
        saved_digest = digest  # written before digests were recorded: the same file stands for the same data
    else:
        saved_digest = _data_digest(before.data) if Path(before.data).is_file() else f"{before.data} (gone)"
    return {**run_identity(before, saved_digest), **newer}


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        return read_saved(path)
    except ConfigMismatch as err:
        raise WarmupError(str(err)) from err


def _check_resume(out: Path, config: SFTConfig, identity: dict[str, Any]) -> Path | None:
    """The checkpoint to resume from (None: start fresh); refuses to mix runs or to replace a finished one unasked."""
    checkpoints = out / CHECKPOINTS
    existing = complete_checkpoints(checkpoints) if checkpoints.exists() else []
    if config.overwrite:
        _clear_run(out)
        return None
    if existing and not config.resume:
        raise WarmupError(f"{out} already has checkpoints: pass --resume to continue, --overwrite to start over, or choose a new --out")
    finished = config.resume and _finished(out) is not None  # nothing to continue, nothing replaced
    if not existing and any((out / name).exists() for name in RESULT_FILES) and not finished:
        # Even with --resume: with no checkpoint it would start afresh over the finished run.
        raise WarmupError(f"{out} holds a finished run and no checkpoint to continue it from; pass --overwrite to replace it, or choose a new --out")
    if not config.resume:
        return None
    differing: set[str] = set()
    saved = _read_record(out / CONFIG_FILE)
    if saved is not None:
        differing.update(changed_settings(_saved_identity(saved, config, identity["data"]), identity))
    if existing:
        recorded = _read_record(existing[-1] / IDENTITY_FILE)
        if recorded is None and saved is None:
            raise WarmupError(
                f"cannot tell which run wrote the checkpoints in {checkpoints} (no {CONFIG_FILE}, and they record no "
                "settings); choose a new --out, or --overwrite to start over"
            )
        if recorded is not None:
            differing.update(changed_settings(recorded, identity))
    if differing:
        raise WarmupError(f"cannot resume {out} with different settings ({', '.join(sorted(differing))}); use a new --out")
    if checkpoints.exists():
        _drop_incomplete_checkpoints(checkpoints)
    return existing[-1] if existing else None


def _finished(out: Path) -> dict[str, Any] | None:
    """The metrics of the run in OUT when it trained all its steps (a run its time limit stopped can go on)."""
    metrics = _read_record(out / METRICS_FILE)
    if metrics is None or not isinstance(metrics.get("global_step"), int) or not isinstance(metrics.get("max_steps"), int):
        return None
    return metrics if metrics["global_step"] >= metrics["max_steps"] else None


def _clear_run(out: Path) -> None:
    from reflectrl.protocol import LABEL_ORDER_FILE

    for folder in (CHECKPOINTS, LOGS):
        shutil.rmtree(out / folder, ignore_errors=True)
    for name in (*RESULT_FILES, LABEL_ORDER_FILE, CONFIG_FILE):
        (out / name).unlink(missing_ok=True)


# ----------------------------------------------------------------------------- run
def pad_batch(features: list[dict[str, Any]], pad_id: int) -> dict[str, Any]:
    """Right-padded input_ids, attention_mask and labels (-100 outside the completion).

    Hand-written because the stock collators either pad on the tokenizer's
    side (left, for generation) or do not turn a completion mask into labels;
    right padding keeps every row's positions 0..n-1, as at rollout time.
    """
    import torch

    width = max(len(f["input_ids"]) for f in features)
    ids = torch.full((len(features), width), int(pad_id), dtype=torch.long)
    mask = torch.zeros((len(features), width), dtype=torch.long)
    labels = torch.full((len(features), width), -100, dtype=torch.long)
    for i, f in enumerate(features):
        n = len(f["input_ids"])
        row = torch.as_tensor(f["input_ids"], dtype=torch.long)
        ids[i, :n] = row
        mask[i, :n] = 1
        keep = torch.as_tensor(f["completion_mask"], dtype=torch.bool)
        labels[i, :n] = torch.where(keep, row, torch.full_like(row, -100))
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def completion_loss(model, inputs: dict[str, Any], focal_gamma: float = 0.0):
    """Mean cross-entropy of the completion tokens, projecting only their positions through the LM head.

    With `focal_gamma` > 0 each token's term is weighted by (1 - p)^gamma (`SFTConfig.focal_gamma`).
    """
    logits, targets, _ = completion_logits(model, inputs)
    return token_loss(logits, targets, focal_gamma)


def completion_logits(model, inputs: dict[str, Any]):
    """The logits (float32) of every completion token of `pad_batch` rows, the tokens, and each token's row.

    Rows generated from one environment start with the same task text (for
    DangerousTaxi 45 % of a policy prompt): it runs once, as at rollout time
    (see `reflectrl.models.prefix`), with the same loss and gradients up to
    float rounding and that much less forward and backward work.
    """
    from reflectrl.models.prefix import bare_decoder, hidden_states, prefix_to_run_once

    ids, mask, labels = inputs["input_ids"], inputs["attention_mask"], inputs["labels"]
    completion_start = int((labels != -100).float().argmax(dim=1).min())
    prefix = prefix_to_run_once(ids, completion_start)
    # hidden[:, j] is position prefix + j; it predicts the token at prefix + j + 1.
    hidden = hidden_states(bare_decoder(model), ids, mask, prefix)[:, :-1]
    targets = labels[:, prefix + 1 :]
    chosen = targets != -100
    logits = model.get_output_embeddings()(hidden[chosen]).float()
    return logits, targets[chosen], chosen.nonzero()[:, 0]


def whole_rows_loss(model, inputs: dict[str, Any], focal_gamma: float = 0.0):
    """`completion_loss` through the model's own forward over every row whole (what DDP can average)."""
    logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
    targets = inputs["labels"][:, 1:]
    chosen = targets != -100
    return token_loss(logits[:, :-1][chosen].float(), targets[chosen], focal_gamma)


def token_loss(logits, targets, focal_gamma: float = 0.0):
    """Mean cross-entropy of `logits` (tokens x vocabulary) against `targets`, focal when `focal_gamma` > 0.

    A reflector's completion is mostly facts copied from its prompt and one decision (the move after "Next:",
    or the wall sentence before it); once the copying is learned, the focal weight leaves the gradient to the
    decisions it still gets wrong instead of averaging them with the near-zero terms of the copied tokens.
    """
    import torch

    if focal_gamma == 0:
        return torch.nn.functional.cross_entropy(logits, targets)
    per_token = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    return ((1 - torch.exp(-per_token)) ** focal_gamma * per_token).mean()


def _autocast(enabled: bool, model):
    from reflectrl.models.precision import bf16_autocast

    return bf16_autocast(enabled, next(model.parameters()).device)


def _trainer_class(identity: dict[str, Any], focal_gamma: float = 0.0):
    import torch
    from transformers import Trainer

    class CompletionOnlyTrainer(Trainer):
        """`Trainer` whose loss is `completion_loss`."""

        # Each micro-batch loss is its own mean; Trainer divides by the accumulation steps.
        loss_is_scaled_for_ga = False

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            # accelerate's autocast wraps model.forward, which completion_loss bypasses: apply it here.
            with _autocast(self.args.bf16, model):
                # The held-out loss stays plain cross-entropy, comparable across focal settings.
                gamma = focal_gamma if model.training else 0.0
                if isinstance(model, torch.nn.parallel.DistributedDataParallel):
                    # Under `accelerate launch` the gradients are averaged by DDP, which only sees a
                    # pass through its own forward: the same loss, without the shared-prefix saving.
                    loss = whole_rows_loss(model, inputs, gamma)
                else:
                    loss = completion_loss(model, inputs, gamma)
            return (loss, {"loss": loss}) if return_outputs else loss

        def _save(self, output_dir=None, state_dict=None):
            from reflectrl.models.adapters import is_peft_model

            folder = output_dir or self.args.output_dir
            if is_peft_model(self.model):
                # peft's default ("auto") looks the base model up on the Hub, which stalls or fails offline.
                os.makedirs(folder, exist_ok=True)
                self.model.save_pretrained(folder, save_embedding_layers=False)
            else:
                super()._save(output_dir, state_dict)
            # Before trainer_state.json, which marks a checkpoint complete: every complete one says whose it is.
            atomic_write_json(Path(folder) / IDENTITY_FILE, identity)

    return CompletionOnlyTrainer


def _add_adapter(model, config: SFTConfig):
    from peft import LoraConfig, get_peft_model

    from reflectrl.models import add_lora

    if config.lora_layers is None:
        return add_lora(model, "default", r=config.lora_r, alpha=config.lora_alpha, dropout=config.lora_dropout)
    import torch

    total = int(model.config.num_hidden_layers)
    top = list(range(max(0, total - int(config.lora_layers)), total))
    # peft takes layers_to_transform only with explicit module names: the linear layers of one block.
    block = model.get_decoder().layers[0]
    names = sorted({name.rsplit(".", 1)[-1] for name, m in block.named_modules() if isinstance(m, torch.nn.Linear)})
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=names,
        layers_to_transform=top,
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def _label_after(rows: list[dict[str, Any]]) -> bool:
    """Whether the rows' menus write labels after actions (data from before the column: label first)."""
    layouts = {bool(row.get("label_after")) for row in rows}
    if len(layouts) > 1:
        raise WarmupError("the data mixes menus with labels first and labels after actions; a policy learns one layout")
    return layouts.pop()


def step_callback(report: Callable[[int, int, dict[str, float]], None]):
    """A `transformers.TrainerCallback` for `run_warmup` that calls `report(step, max_steps, logs)` when training
    starts (a resumed run at its checkpoint's step), after each optimizer step (`logs` empty) and with each set of
    logged metrics (the training loss every `logging_steps`, the run's averages at the end)."""
    from transformers import TrainerCallback

    class StepReport(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            report(state.global_step, state.max_steps, {})

        def on_step_end(self, args, state, control, **kwargs):
            report(state.global_step, state.max_steps, {})

        def on_log(self, args, state, control, logs=None, **kwargs):
            report(state.global_step, state.max_steps, {k: v for k, v in (logs or {}).items() if isinstance(v, (int, float))})

    return StepReport()


def run_warmup(config: SFTConfig, show_progress: bool = True, callbacks: list | None = None) -> WarmupResult:
    """Train one player by SFT as `config` says; returns the final metrics (also in OUT/metrics.json).

    `callbacks` are extra `transformers.TrainerCallback`s (e.g. `step_callback`). Without `show_progress`
    nothing is printed: no progress bar, and the logged metrics only go to the trackers and the callbacks.
    """
    import torch
    from datasets import Dataset
    from torch.utils.tensorboard import SummaryWriter
    from transformers import PrinterCallback, TrainerCallback, TrainingArguments
    from transformers.integrations import TensorBoardCallback, get_reporting_integration_callbacks

    from reflectrl.models import load_model
    from reflectrl.protocol import LabelSet, save_label_order

    config.check()
    # Settings and data are checked before OUT is touched, so a mistake costs nothing already there.
    rows = load_rows(config.data, config.role)
    label_after = _label_after(rows) if config.role != "reflector" else False  # a mixed file fails before training
    train_rows, eval_rows = split_rows(rows, config.eval_fraction, config.seed)
    digest = _data_digest(config.data)
    identity = run_identity(config, digest)
    if config.threads:
        torch.set_num_threads(int(config.threads))
    model_spec = _resolved_spec(config.model)  # the adapter records its base; keep it valid from anywhere
    out = Path(config.out)
    # A result that a killed run had committed is moved in first, so that it counts as the finished run it is.
    recover_folder(out)
    resume_from = _check_resume(out, config, identity)
    finished = _finished(out) if config.resume else None
    if finished is not None:
        # Nothing left to continue: the result is written as one set with these metrics, and the checkpoints
        # (perhaps cut by a kill since, or cleaned up) are not needed to say what it was.
        return WarmupResult(out=out, metrics=finished)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / CONFIG_FILE, {**asdict(config), DATA_DIGEST: digest})

    rng = np.random.default_rng(config.seed)
    if len(eval_rows) > config.max_eval_rows:
        eval_rows = [eval_rows[i] for i in sorted(rng.choice(len(eval_rows), config.max_eval_rows, replace=False))]

    model, tokenizer = load_model(model_spec, dtype=torch.float32)
    label_set = LabelSet.for_tokenizer(tokenizer)
    train_data, _ = tokenize_rows(train_rows, config.role, tokenizer, label_set, config.max_length)
    eval_data, kept_eval_rows = tokenize_rows(eval_rows, config.role, tokenizer, label_set, config.max_length)
    dropped = len(train_rows) - len(train_data) + len(eval_rows) - len(eval_data)
    if not train_data:
        raise WarmupError(f"no training rows fit in max_length={config.max_length} tokens")
    if config.full:
        for param in model.parameters():
            param.requires_grad_(True)
    elif config.init_adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, config.init_adapter, is_trainable=True)
    else:
        # LoRA's first matrix is drawn from torch's global generator: seed it here, or the adapter
        # depends on whatever ran earlier in the process (a pipeline's data stage, an earlier SFT).
        torch.manual_seed(config.seed)
        model = _add_adapter(model, config)
    model.train()

    steps_per_epoch = math.ceil(len(train_data) / (config.batch_size * config.grad_accum))
    total_steps = config.max_steps if config.max_steps > 0 else max(1, math.ceil(steps_per_epoch * config.epochs))
    from reflectrl.models.precision import resolve_bf16

    bf16 = resolve_bf16(config.bf16)
    do_eval = bool(eval_data)
    # TensorBoard keeps its own writer (the label evaluations write to it too); the others are transformers'.
    integrations = [name for name in config.report_to if name != "tensorboard"]
    run_name = config.run_name or out.absolute().name
    args = TrainingArguments(
        output_dir=str(out / CHECKPOINTS),
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=round(config.warmup_ratio * total_steps),
        max_steps=total_steps,
        logging_steps=config.logging_steps,
        # Policy/plain rows are evaluated by `LabelEval` instead (loss and accuracy from one forward pass).
        eval_strategy="steps" if do_eval and config.eval_steps > 0 and config.role == "reflector" else "no",
        eval_steps=config.eval_steps if config.eval_steps > 0 else None,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        bf16=bf16,
        use_cpu=not torch.cuda.is_available(),
        seed=config.seed,
        data_seed=config.seed,
        report_to=integrations or "none",
        run_name=run_name,
        disable_tqdm=not show_progress,
        remove_unused_columns=False,
        prediction_loss_only=True,
        optim="adamw_torch",
    )

    class TimeLimit(TrainerCallback):
        """Stops training after `max_minutes` of this session, saving a checkpoint first."""

        def __init__(self):
            self.start = time.monotonic()
            self.hit = False

        def on_step_end(self, args, state, control, **kwargs):
            if config.max_minutes is not None and time.monotonic() - self.start > 60 * config.max_minutes:
                self.hit = True
                control.should_training_stop = True
                control.should_save = True
            return control

    class LabelEval(TrainerCallback):
        """Held-out label loss and accuracy every `eval_steps` steps (policy and plain)."""

        def on_step_end(self, args, state, control, **kwargs):
            if config.eval_steps > 0 and state.global_step % config.eval_steps == 0 and state.global_step < args.max_steps:
                record(state.global_step)

    def record(step: int) -> dict[str, float]:
        result = evaluate_labels(trainer.model, tokenizer, label_set, kept_eval_rows, config.batch_size, bf16)
        logs = {"eval_loss": result["eval_loss"], "eval_label_accuracy": result["label_accuracy"]}
        trainer.state.log_history.append({**logs, "step": step})
        if writer is not None:
            writer.add_scalar("eval/loss", result["eval_loss"], step)
            writer.add_scalar("eval/label_accuracy", result["label_accuracy"], step)
            writer.flush()
        # As the trainer's own evaluations reach them, under each tracker's names for them.
        reporting = tuple(get_reporting_integration_callbacks(trainer.args.report_to))
        for callback in trainer.callback_handler.callbacks:
            if isinstance(callback, reporting):
                callback.on_log(trainer.args, trainer.state, trainer.control, logs=logs)
        return result

    writer = SummaryWriter(log_dir=str(out / LOGS)) if "tensorboard" in config.report_to else None
    timer = TimeLimit()
    all_callbacks = ([TensorBoardCallback(tb_writer=writer)] if writer is not None else []) + [timer] + list(callbacks or [])
    if config.role != "reflector" and config.accuracy_each_eval and do_eval:
        all_callbacks.append(LabelEval())
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    trainer = _trainer_class(identity, config.focal_gamma)(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(train_data),
        eval_dataset=Dataset.from_list(eval_data) if do_eval else None,
        data_collator=lambda features: pad_batch(features, pad_id),
        callbacks=all_callbacks,
    )
    if not show_progress:
        trainer.remove_callback(PrinterCallback)  # transformers' stand-in for the bar prints every logged dict
    # Opened before training: the integrations then log into these runs (and do not end them when training
    # ends, before the final evaluation) instead of opening runs of their own.
    trackers = RunTrackers(integrations if args.process_index == 0 else (), out, run_name, {"sft": asdict(config)})
    trackers.start()
    try:
        started = time.monotonic()
        if resume_from is not None and _checkpoint_step(resume_from) >= total_steps:
            # Killed after its last checkpoint: transformers' loop takes one optimizer step before it
            # checks max_steps, so resuming through `train` would train a step the straight run never took.
            from transformers import TrainerState

            trainer._load_from_checkpoint(str(resume_from))
            trainer.state = TrainerState.load_from_json(str(resume_from / "trainer_state.json"))
        else:
            trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        train_seconds = time.monotonic() - started

        metrics: dict[str, Any] = {
            "role": config.role,
            "train_rows": len(train_data),
            "eval_rows": len(eval_data),
            "dropped_too_long": dropped,
            "global_step": trainer.state.global_step,
            "max_steps": total_steps,
            "epochs_done": round(trainer.state.global_step * config.batch_size * config.grad_accum / len(train_data), 3),
            "train_seconds_this_session": round(train_seconds, 1),
            # What a step costs: tokens per training row (padding excluded) and rows trained per second this session.
            "tokens_per_row": round(float(np.mean([len(f["input_ids"]) for f in train_data])), 1),
            "rows_per_second": round(
                (trainer.state.global_step - (_checkpoint_step(resume_from) if resume_from else 0))
                * config.batch_size * config.grad_accum / max(train_seconds, 1e-9), 3,
            ),
            "resumed_from": resume_from.name if resume_from else None,
            "stopped_by_time_limit": timer.hit,
            "bf16": bf16,
        }
        if do_eval and config.role == "reflector":
            metrics["eval_loss"] = round(float(trainer.evaluate()["eval_loss"]), 4)
        elif do_eval:
            started_eval = time.monotonic()
            final = record(trainer.state.global_step)
            metrics["eval_loss"] = round(final["eval_loss"], 4)
            metrics["label_accuracy"] = round(final["label_accuracy"], 4)
            metrics["eval_seconds"] = round(time.monotonic() - started_eval, 1)
            metrics.update(baseline_accuracies(kept_eval_rows))
        # Only what the run computed: transformers adds run times, which differ between equal runs.
        kept = ("step", "epoch", "eval_loss", "eval_label_accuracy")
        metrics["eval_history"] = [
            {k: h[k] for k in kept if k in h} for h in trainer.state.log_history if "eval_label_accuracy" in h or "eval_loss" in h
        ]
    finally:
        trackers.finish()
    if writer is not None:
        writer.close()
    # One set, so that a kill leaves the previous result or this one: never weights without their tokenizer or
    # label order (a loader would fill a missing label order in with defaults), nor a finished run's metrics
    # next to another run's adapter. The file that marks the folder as a model goes in last.
    with atomic_files(out, last=("adapter_config.json", "config.json")) as stage:
        if config.full:
            trainer.model.save_pretrained(str(stage))
            tokenizer.save_pretrained(str(stage))
        else:
            trainer.model.save_pretrained(str(stage), save_embedding_layers=False)  # offline, as in `_save`
        if config.role != "reflector":
            # Rollouts must present menus the way the data did: fixed when every row has the labels in order.
            fixed = all(list(r["labels"]) == list(label_set.labels[: len(r["labels"])]) for r in rows)
            save_label_order(stage, shuffle_labels=not fixed, label_after=label_after)
        atomic_write_json(stage / METRICS_FILE, metrics)
    return WarmupResult(out=out, metrics=metrics)
