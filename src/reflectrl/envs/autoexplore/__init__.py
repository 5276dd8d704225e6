"""AutoExplore: a sandboxed repository-exploration environment and its task generator.

Modules: `sandbox` (the one path-checked, read-only layer over the file
system), `env` (the `AutoExploreEnv` text environment, rewards and levels),
`taskset` (the task record, task files and splits), `questions` and
`generator` (offline task generation from any folder tree), `rewrite`
(optional LLM rewriting of questions), `synthetic` and `benchmark` (the
built-in benchmark, generated on first use).
"""

from reflectrl.envs.autoexplore.env import AutoExploreEnv
from reflectrl.envs.autoexplore.taskset import Task, TaskSetError, load_tasks, save_tasks

__all__ = ["AutoExploreEnv", "Task", "TaskSetError", "load_tasks", "save_tasks"]
