"""Evaluation: success rates with confidence intervals, for scripted and learned agents."""

from reflectrl.evaluation.scripted import ScriptedResult, evaluate_scripted
from reflectrl.evaluation.stats import wilson_interval

__all__ = ["ScriptedResult", "evaluate_scripted", "wilson_interval"]
