"""What the reports say about their numbers: exact evaluations (every start state once) reported as exact, in each
seed's report, its eval.md files and the report over the seeds, whose intervals are worded and bounded as t-intervals
over seeds."""

from __future__ import annotations

import re
import struct
from dataclasses import replace
from pathlib import Path

import pytest

from reflectrl.pipeline.presets import preset
from reflectrl.pipeline.report import PAIRED_EXACT, PAIRED_SAMPLED, render_paired, success_axis
from reflectrl.pipeline.seeds import run_seeds

pytestmark = pytest.mark.usefixtures("one_thread")


def _exact_preset():
    """The tiny preset evaluating every one of drop-off's 100 start states (in one lockstep batch), the prompted row
    4 seeded episodes only: exact rows and a sampled one in the same report, as the cpu preset has them."""
    tiny = preset("tiny", "taxi")
    return replace(tiny, eval=replace(tiny.eval, episodes="all", batch_size=100, prompted_episodes=4))


@pytest.fixture(scope="module")
def exact_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("exact") / "run"
    run_seeds("taxi", _exact_preset(), out, [0, 1], command="reflectrl pipeline taxi --seeds 2", log=lambda message: None, progress=False)
    return out


def _section(report: str, heading: str) -> str:
    return report.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    return struct.unpack(">II", data[16:24])


@pytest.mark.slow  # about 60 s on an idle 2-core CPU: two tiny pipelines evaluated on every start state
def test_a_seed_report_and_its_eval_files_call_exact_rates_exact(exact_run):
    report = (exact_run / "seed-0" / "report.md").read_text()
    assert "success on all 100 held-out start states (exact rates)" in report.splitlines()[2]
    assert "a row that played a sample of episodes has a 95% Wilson score interval; a row that played every start state once has none" in report
    tables = report.split("\n## ", 1)[0]  # the comparison and the reference players
    rows = {cells[0]: cells[1:] for cells in (line.strip("| ").split(" | ") for line in tables.splitlines() if line.startswith("| "))}
    assert rows["Reflect-RL"][1] == "exact" and rows["Oracle (upper bound)"][1] == "exact"
    assert rows["tiny-random, prompted"][1].startswith("[") and rows["tiny-random, prompted"][2] == "4"

    paired = _section(report, "Each RL row against its SFT start")
    assert PAIRED_EXACT in paired and PAIRED_SAMPLED not in paired and "bootstrap" not in paired
    lines = [line for line in paired.splitlines() if line.startswith("| Reflect-RL |") or line.startswith("| SFT + RL, no reflection |")]
    assert len(lines) == 2
    for line in lines:
        cells = line.strip("| ").split(" | ")
        assert cells[3].endswith(" (exact)") and cells[6].endswith(" (exact)") and "[" not in line
        before, after = (float(x.rstrip("%")) for x in cells[2].split(" -> "))
        assert float(cells[3].split()[0]) == pytest.approx(after - before)
    assert f"![{success_axis([True, False]).replace(chr(10), ' ')}](success.png)" in report

    exact = (exact_run / "seed-0" / "eval-rl-reflect" / "dropoff" / "eval.md").read_text()
    assert "every one of the 100 start states" in exact and "exact, with no sampling interval" in exact and "| exact |" in exact
    sampled = (exact_run / "seed-0" / "eval-prompted" / "dropoff" / "eval.md").read_text()
    assert "no sampling interval" not in sampled and "| exact |" not in sampled


@pytest.mark.slow  # shares the module's two exact runs
def test_the_report_over_exact_seeds_bounds_its_t_intervals_and_gives_untrained_rows_none(exact_run):
    report = (exact_run / "report.md").read_text()
    assert "Each seed's rates are exact" in report and "training noise alone" in report
    assert "t(0.975, 1) = 12.71, so they stay wide until more seeds run" in report
    assert not re.search(r"-0\.0+(?!\d)", report)  # a mean a hair below zero prints as zero, not "-0.0"
    success = _section(report, "Held-out success, seed by seed")
    # Two seeds: t = 12.71, so a rate's interval would reach far below 0%; it is cut to what a rate can be.
    bounds = [float(bound) for pair in re.findall(r"\[(-?[\d.]+)%, (-?[\d.]+)%\]", success) for bound in pair]
    assert bounds and all(0.0 <= b <= 100.0 for b in bounds)
    for row in ("Oracle (upper bound)", "Random (chance level)", "tiny-random, prompted"):
        assert re.search(rf"^\| {re.escape(row)} \|.*\| none: trains nothing, one evaluation in every seed \|$", success, re.M), row
    differences = _section(report, "Paired differences within each seed")
    for low, high in re.findall(r"\[([+-][\d.]+), ([+-][\d.]+)\]", differences.split("Mean return:")[0]):
        assert -100.0 <= float(low) <= float(high) <= 100.0
    width, _ = _png_size(exact_run / "learning_curves.png")
    assert width > 1000  # one panel per RL row, side by side


def test_paired_comparisons_say_which_are_exact():
    sampled = {"success_before": 0.5, "success_after": 0.6, "won": 12, "lost": 2, "mcnemar_p": 0.013,
               "return_difference": 1.5, "return_ci_low": 0.25, "return_ci_high": 2.75}
    exact = {**sampled, "exact": True}
    text = render_paired([("RL", "SFT", sampled)])
    assert PAIRED_SAMPLED in text and PAIRED_EXACT not in text and "mean return difference [95% bootstrap] |" in text
    assert "| RL | SFT | 50.0% -> 60.0% | +10.0 | 12 / 2 | 0.013 | +1.50 [+0.25, +2.75] |" in text
    text = render_paired([("RL", "SFT", exact)])
    assert PAIRED_EXACT in text and PAIRED_SAMPLED not in text and "bootstrap" not in text
    assert "| RL | SFT | 50.0% -> 60.0% | +10.0 (exact) | 12 / 2 | 0.013 | +1.50 (exact) |" in text
    both = render_paired([("RL", "SFT", exact), ("RL, level b", "SFT, level b", sampled)])
    assert PAIRED_EXACT in both and PAIRED_SAMPLED in both and "+1.50 (exact)" in both and "+1.50 [+0.25, +2.75]" in both
    assert "Wilson" in success_axis([False]) and "Wilson" not in success_axis([True, True]) and "exact" in success_axis([True, False])
