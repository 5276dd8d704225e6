"""Trainers: warm-up SFT and online RL (losses, returns, replay buffer, curriculum, checkpoints)."""
