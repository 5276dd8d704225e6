"""The trained policy folder (`final/`) is written as one unit: adapter, value head and label order together."""

import pytest

from reflectrl.players.load import load_rl_players
from reflectrl.rollout import LocalRolloutEngine
from reflectrl.trainers import online
from reflectrl.trainers.online import OnlineTrainer, RLConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_kill_while_saving_the_final_policy_leaves_no_adapter_without_its_value_head_and_label_order(tmp_path, monkeypatch):
    config = RLConfig(env="corridor", levels=("short",), algo="ppo", episodes_per_iter=2, eval_every=0)
    players = load_rl_players("tiny-random", None, value_head=True, shuffle_labels=False)
    engine = LocalRolloutEngine("corridor", players.agent, 2, {"max_actions": len(players.label_set)})
    trainer = OnlineTrainer(config, players.policy, engine, levels=("short",))
    final = tmp_path / "final"

    def killed(folder, shuffle_labels, label_after=False):
        raise KeyboardInterrupt  # the process dies after the adapter and value head are on disk

    monkeypatch.setattr(online, "save_label_order", killed)
    with pytest.raises(KeyboardInterrupt):
        trainer.save_final(final)
    assert not final.exists()

    monkeypatch.undo()
    trainer.save_final(final)
    assert {"adapter_model.safetensors", "value_head.safetensors", "label_order.json"} <= {p.name for p in final.iterdir()}
    assert [p.name for p in tmp_path.iterdir()] == ["final"]  # no temporary folder left behind
