"""`SFTConfig`: the settings of one SFT warm-up run (`reflectrl.trainers.sft.run_warmup`).

Kept beside the trainer rather than in it, as `rl_config` is beside the RL trainer: the CLI and the pipeline
presets build it without loading the trainer. Its LoRA rank and alpha are `LoraShape`'s, which RL's
fresh policy adapter shares (`reflectrl.players.players_config`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from reflectrl.players.players_config import LoraShape
from reflectrl.trainers.trackers import DEFAULT_REPORT_TO, TrackerError, check_report_to

ROLES = ("reflector", "policy", "plain")


@dataclass
class SFTConfig(LoraShape):
    """Settings of one SFT warm-up run (saved as OUT/warmup_config.json)."""

    RESUMABLE: ClassVar[tuple[str, ...]] = ("resume", "overwrite", "max_minutes", "threads", "extra", "out", "report_to", "run_name")
    """Settings a resumed run may change (see `reflectrl.run_settings`); `extra` holds notes such as the command line,
    `out` is the folder being resumed, however it is spelled, and the trackers only show the run."""

    role: str
    """reflector, policy or plain."""
    data: str
    """JSONL file written by gen-data (reflector.jsonl, policy.jsonl, plain.jsonl or a positive variant)."""
    out: str
    """Output folder: adapter (or full model), config, metrics, checkpoints and logs."""
    model: str = "smollm2-135m"
    """Base model spec (see `reflectrl.models.load_model`)."""
    full: bool = False
    """Fine-tune all weights instead of a LoRA adapter."""
    lora_dropout: float = 0.0
    """Dropout on the LoRA input."""
    lora_layers: int | None = None
    """Adapt only the top this many transformer blocks (None: all); fewer is faster on CPU."""
    learning_rate: float = 2e-4
    """Peak learning rate."""
    epochs: float = 1.0
    """Passes over the training rows (ignored when max_steps > 0)."""
    max_steps: int = -1
    """Optimizer steps to run; -1 derives them from epochs."""
    max_minutes: float | None = None
    """Stop (with a checkpoint and the final evaluation) after this much training time in this session."""
    batch_size: int = 8
    """Rows per optimizer step (per gradient-accumulation micro-batch)."""
    grad_accum: int = 1
    """Micro-batches per optimizer step."""
    max_length: int = 1024
    """Rows longer than this many tokens are dropped (cutting would remove the completion)."""
    eval_fraction: float = 0.1
    """Share of episodes held out for evaluation."""
    max_eval_rows: int = 200
    """Most held-out rows evaluated (a seeded subset), to bound evaluation time."""
    eval_steps: int = 50
    """Evaluate every this many steps (0: only at the end)."""
    save_steps: int = 50
    """Checkpoint every this many steps."""
    save_total_limit: int = 2
    """Checkpoints kept."""
    logging_steps: int = 10
    """Log the training loss every this many steps."""
    warmup_ratio: float = 0.05
    """Share of steps with a linearly rising learning rate."""
    lr_scheduler: str = "cosine"
    """transformers scheduler name (linear, cosine, constant, ...)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    bf16: bool | None = None
    """bfloat16 autocast; None: on CUDA with bf16, off on CPUs (float32 keeps the numbers independent of native bfloat16 support)."""
    seed: int = 0
    """Seed of the held-out split, data order and initialisation."""
    threads: int | None = None
    """torch CPU threads (None: torch's default)."""
    resume: bool = False
    """Continue from the last complete checkpoint in OUT/checkpoints (a run that trained all its steps: return its result)."""
    overwrite: bool = False
    """Replace the run in OUT (checkpoints, logs, adapter or model, metrics) with a new one."""
    accuracy_each_eval: bool = True
    """Policy/plain: also measure held-out label accuracy at every evaluation (logged as eval_label_accuracy)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form notes stored with the config (e.g. the command line)."""
    report_to: tuple[str, ...] = DEFAULT_REPORT_TO
    """Experiment trackers (`reflectrl.trainers.trackers.TRACKERS`): tensorboard writes OUT/logs, the others get this
    config once and the `Trainer`'s logs through transformers' integrations."""
    run_name: str | None = None
    """The run's name in the trackers (None: OUT's folder name)."""
    focal_gamma: float = 0.0
    """Focal loss exponent (Lin et al. 2017): each completion token's cross-entropy weighted by (1 - p)^gamma, p the
    token's probability, so tokens the model already predicts (facts copied from the prompt) weigh less than those it
    gets wrong (a rare decision); 0: plain cross-entropy. The held-out loss is always plain cross-entropy."""
    init_adapter: str | None = None
    """Start from this LoRA adapter folder's weights instead of a fresh adapter (a further round of SFT on new rows,
    e.g. `reflectrl.datagen.dagger`); its rank and layers are kept, so the LoRA settings above do not apply."""

    def check(self) -> None:
        # Imported here: sft.py imports this module, and its error covers the data and the run folder too.
        from reflectrl.trainers.sft import WarmupError

        if self.focal_gamma < 0:
            raise WarmupError(f"focal_gamma must be >= 0 (got {self.focal_gamma})")
        if self.role not in ROLES:
            raise WarmupError(f"unknown role {self.role!r}; choose from {', '.join(ROLES)}")
        if not Path(self.data).is_file():
            raise WarmupError(f"data file {self.data} does not exist")
        if not 0 < self.eval_fraction < 1:
            raise WarmupError("eval_fraction must be between 0 and 1")
        for name in ("batch_size", "grad_accum", "max_length", "save_steps", "lora_r", "logging_steps"):
            if getattr(self, name) < 1:
                raise WarmupError(f"{name} must be >= 1")
        if self.learning_rate <= 0:
            raise WarmupError("learning_rate must be > 0")
        if self.max_steps == 0 or (self.max_steps < 0 and self.epochs <= 0):
            raise WarmupError("give max_steps > 0 or epochs > 0")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise WarmupError("max_minutes must be > 0")
        if self.resume and self.overwrite:
            raise WarmupError("choose either resume (continue the run in out) or overwrite (replace it), not both")
        if self.init_adapter is not None:
            if self.full:
                raise WarmupError("init_adapter continues a LoRA adapter; it cannot start a full fine-tune")
            if not (Path(self.init_adapter) / "adapter_config.json").is_file():
                raise WarmupError(f"init_adapter {self.init_adapter} is not a LoRA adapter folder (no adapter_config.json)")
        try:
            check_report_to(self.report_to)
        except TrackerError as err:
            raise WarmupError(str(err)) from err
        from transformers import SchedulerType

        schedules = [s.value for s in SchedulerType]
        if self.lr_scheduler not in schedules:
            raise WarmupError(f"unknown lr_scheduler {self.lr_scheduler!r}; choose from {', '.join(schedules)}")
