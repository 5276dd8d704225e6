"""One PPO update of the tiny policy on a fixed batch, alone or under `accelerate launch`; writes the updated weights.

Run by tests/test_data_parallel.py: `python tests/data_parallel_update.py OUT` (one process) and
`accelerate launch --cpu --num_processes 2 tests/data_parallel_update.py OUT` (two, gloo).
Process r writes OUT/weights-r.safetensors (every trainable tensor; OUT/initial.safetensors before the update); process 0 also OUT/stats.json.
"""

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from reflectrl.players.load import load_rl_players
from reflectrl.rollout import LocalRolloutEngine
from reflectrl.rollout.episode import EpisodeRequest
from reflectrl.trainers.data_parallel import launched_processes, make_accelerator
from reflectrl.trainers.rl_config import RLConfig, derive_seed
from reflectrl.trainers.update import PolicyUpdate

# PPO: value head, ratio refresh, two epochs, replayed steps. The batch has 15 steps (10 played,
# 5 replayed): 8 micro-batches of 2, optimizer steps of 7 then 1, so the processes get unequal
# shares and one of them runs a stand-in micro-batch.
CONFIG = RLConfig(
    env="corridor", algo="ppo", episodes_per_iter=6, epochs=2, micro_batch_size=2, minibatch_size=14, lr=1e-3, seed=0,
    replay_episodes=2,
)


def main(out: Path) -> None:
    torch.set_num_threads(1)
    players = load_rl_players("tiny-random", None, value_head=True, shuffle_labels=False, init_seed=CONFIG.seed)
    engine = LocalRolloutEngine("corridor", players.agent, 6, {"max_actions": len(players.label_set), "horizon": 5})
    requests = [EpisodeRequest(seed, "medium", seed) for seed in range(CONFIG.episodes_per_iter)]
    with torch.no_grad():
        batch = engine.collect(requests, generator=torch.Generator().manual_seed(1), label_seed=2)
    accelerator = make_accelerator() if launched_processes() > 1 else None
    update = PolicyUpdate(CONFIG, players.policy, accelerator=accelerator)
    out.mkdir(parents=True, exist_ok=True)
    save_file({f"param{i}": p.detach().clone() for i, p in enumerate(update.params)}, str(out / "initial.safetensors"))
    torch.manual_seed(derive_seed(CONFIG.seed, 0, "update"))
    stats = update.update(batch, batch.episodes[:2], 0)
    weights = {f"param{i}": p.detach().contiguous() for i, p in enumerate(update.params)}
    save_file(weights, str(out / f"weights-{update.processes.index}.safetensors"))
    if update.processes.index == 0:
        (out / "stats.json").write_text(json.dumps({**stats, "processes": update.processes.count}))
    if accelerator is not None:
        accelerator.wait_for_everyone()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
