"""Teacher data for the SFT warm-up: expert rollouts, negative examples, validated JSONL.

`generate(GenConfig(...))` writes reflector/policy/plain JSONL files (plus
positive-only variants and stats.json) that `datasets.load_dataset("json", ...)`
reads directly; see `reflectrl.datagen.generate` for the layout and
`reflectrl.datagen.rows` for the row format.
"""

from reflectrl.datagen.config import SPLIT_SEED_OFFSETS, GenConfig
from reflectrl.datagen.episodes import (
    EXPERT,
    NEGATIVE,
    ReplayError,
    StepSample,
    expert_episode,
    negative_samples,
    replay,
)
from reflectrl.datagen.generate import (
    OUTPUT_FILES,
    ConfigMismatch,
    GenResult,
    generate,
    load_rows,
    validate_dataset,
)
from reflectrl.datagen.journal import CorruptJournal, EpisodeJournal
from reflectrl.datagen.validate import (
    InvalidRows,
    check_choice_row,
    check_off_path,
    check_reflector_row,
    validate,
)

__all__ = [
    "EXPERT",
    "NEGATIVE",
    "OUTPUT_FILES",
    "SPLIT_SEED_OFFSETS",
    "ConfigMismatch",
    "CorruptJournal",
    "EpisodeJournal",
    "GenConfig",
    "GenResult",
    "InvalidRows",
    "ReplayError",
    "StepSample",
    "check_choice_row",
    "check_off_path",
    "check_reflector_row",
    "expert_episode",
    "generate",
    "load_rows",
    "negative_samples",
    "replay",
    "validate",
    "validate_dataset",
]
