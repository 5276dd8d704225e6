"""The RL update under `accelerate launch`: two CPU processes (gloo) compute the update one process computes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

SCRIPT = Path(__file__).with_name("data_parallel_update.py")
WEIGHT_TOLERANCE = 1e-5
"""Largest difference allowed in any updated weight: float sums run in another order across processes
(measured: gradients within 4e-8, weights within 1.2e-6 after the update's 4 Adam steps at lr 1e-3, whose
steps move a weight by up to 4e-3)."""


def _run(command: list[str], timeout: float) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    source = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (source, env.get("PYTHONPATH")) if p)
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.slow  # two launches of the tiny model, about a minute on two cores
def test_two_processes_give_the_weights_of_one_process_after_one_update(tmp_path):
    _run([sys.executable, str(SCRIPT), str(tmp_path / "one")], timeout=300)
    # --multi_gpu is accelerate's multi-process launcher (torchrun); without CUDA the processes use the CPU and gloo.
    _run([
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29531", str(SCRIPT), str(tmp_path / "two"),
    ], timeout=600)

    one = load_file(str(tmp_path / "one" / "weights-0.safetensors"))
    two = [load_file(str(tmp_path / "two" / f"weights-{rank}.safetensors")) for rank in (0, 1)]
    start = load_file(str(tmp_path / "one" / "initial.safetensors"))
    assert one.keys() == two[0].keys() == two[1].keys() and len(one) > 2
    # The processes end with identical weights (the averaged gradients and the optimizer steps agree exactly) ...
    assert all(torch.equal(two[0][k], two[1][k]) for k in one)
    # ... and those of one process on the same global batch, up to float rounding.
    for name in one:
        torch.testing.assert_close(two[0][name], one[name], rtol=0, atol=WEIGHT_TOLERANCE)
    moved = max(float((one[k] - start[k]).abs().max()) for k in start)
    assert moved > 100 * WEIGHT_TOLERANCE, f"the update hardly moved the weights ({moved})"

    stats_one = json.loads((tmp_path / "one" / "stats.json").read_text())
    stats_two = json.loads((tmp_path / "two" / "stats.json").read_text())
    assert (stats_one.pop("processes"), stats_two.pop("processes")) == (1, 2)
    assert stats_one.keys() == stats_two.keys()
    for key in stats_one:
        assert stats_two[key] == pytest.approx(stats_one[key], rel=1e-5, abs=1e-6), key


TRAIN = [
    "train", "corridor", "--policy", "tiny-random", "--no-reflection", "--algo", "pg", "--iters", "2",
    "--episodes-per-iter", "8", "--levels", "medium", "--fixed-labels", "--lr", "1e-3", "--micro-batch-size", "2",
    "--eval-every", "1", "--eval-episodes", "4", "--checkpoint-every", "1", "--replay-size", "4", "--quiet",
]


@pytest.mark.slow  # two short runs of the tiny model, one of them in two processes
def test_reflectrl_train_under_accelerate_launch_matches_one_process(tmp_path):
    _run([sys.executable, "-m", "reflectrl.cli.main", *TRAIN, "--out", str(tmp_path / "one")], timeout=300)
    _run([
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29532",
        "--module", "reflectrl.cli.main", *TRAIN, "--out", str(tmp_path / "two"),
    ], timeout=600)
    one = load_file(str(tmp_path / "one" / "final" / "adapter_model.safetensors"))
    two = load_file(str(tmp_path / "two" / "final" / "adapter_model.safetensors"))
    assert one.keys() == two.keys()
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=0, atol=WEIGHT_TOLERANCE)

    def metrics(folder):
        lines = (folder / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(line).items() if not k.startswith("time/")} for line in lines]

    # One metrics line per iteration (the main process alone writes), the same episodes as one process.
    a, b = metrics(tmp_path / "one"), metrics(tmp_path / "two")
    assert [r["iteration"] for r in b] == [0, 1, 2]
    for ra, rb in zip(a, b):
        assert ra.keys() == rb.keys()
        assert {k: v for k, v in rb.items() if k.startswith(("train/", "val/"))} == {
            k: v for k, v in ra.items() if k.startswith(("train/", "val/"))
        }
        for key in (k for k in ra if k.startswith("loss/")):
            assert rb[key] == pytest.approx(ra[key], rel=1e-4, abs=1e-6), key
