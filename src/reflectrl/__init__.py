"""reflectrl: Reflect-RL for language-model agents in multi-round text environments."""

from reflectrl import envs as envs  # registers the environments with gymnasium

__version__ = "0.1.0"
