"""Teachers write the reflections of the SFT data from privileged information.

* `OracleTeacher` (``oracle``): offline and deterministic, with one
  `Explainer` per environment (`reflectrl.teachers.explainers`).
* `OpenAITeacher` (``openai:MODEL``): any OpenAI-compatible endpoint, with the
  paper's prompt (state, hidden hint, "do not mention the hint").
* `LocalModelTeacher` (``hf:PATH``): a local causal LM.

`make_teacher(spec)` builds one; `CachedTeacher` puts it behind the on-disk
answer cache, so no answer is paid for twice.
"""

from reflectrl.teachers.base import Assessment, ReflectionRequest, Teacher
from reflectrl.teachers.cache import CachedTeacher, TeacherCache, cache_key
from reflectrl.teachers.explainers import (
    EXPLAINERS,
    GENERIC,
    Explainer,
    explainer_for,
    register_explainer,
)
from reflectrl.teachers.oracle import OracleTeacher
from reflectrl.teachers.prompt import TEACHER_SYSTEM, hint_text, teacher_prompt
from reflectrl.teachers.registry import (
    TeacherSpecError,
    cached_teacher,
    make_teacher,
    parse_teacher_spec,
)

__all__ = [
    "EXPLAINERS",
    "GENERIC",
    "TEACHER_SYSTEM",
    "Assessment",
    "CachedTeacher",
    "Explainer",
    "OracleTeacher",
    "ReflectionRequest",
    "Teacher",
    "TeacherCache",
    "TeacherSpecError",
    "cache_key",
    "cached_teacher",
    "explainer_for",
    "hint_text",
    "make_teacher",
    "parse_teacher_spec",
    "register_explainer",
    "teacher_prompt",
]
