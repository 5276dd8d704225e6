"""The end-to-end pipeline: teacher data -> SFT -> RL -> evaluation -> report."""
