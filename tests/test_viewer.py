"""`reflectrl view`: what an evaluation records for the page, the page's data, and the page in a real headless browser."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

import browser
from reflectrl.cli.main import app
from reflectrl.evaluation.agent_loader import AgentSpec, load_agent
from reflectrl.evaluation.harness import EvalConfig, evaluate
from reflectrl.evaluation.scripted_agents import OracleAgent
from reflectrl.evaluation.viewer import (
    CRASHED,
    OUT_OF_STEPS,
    WON,
    find_episode_files,
    load_evaluations,
    outcome,
    page_data,
    read_episodes,
    render_page,
    went_wrong,
    write_page,
)

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")

CONFIG = EvalConfig("taxi", episodes=8, level="dropoff", horizon=4, batch_size=8)
"""Eight drop-off episodes cut at 4 steps: the tiny random policy crashes in some and runs out of steps in others."""
HOSTILE = '<img src=x onerror="window.hacked=1"></script><script>window.hacked=2</script><!--'
"""Recorded text that a page building HTML from strings would run."""


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    """A run-folder layout: the tiny reflective agent and the oracle on the same eight episodes (judged)."""
    out = tmp_path_factory.mktemp("viewer") / "run"
    loaded = load_agent(AgentSpec("reflect", policy="tiny-random", reflector="tiny-random", reflection_tokens=3, device="cpu"))
    try:
        evaluate(loaded.agent, CONFIG, max_actions=loaded.max_actions, description=loaded.description).write(out / "eval-reflect" / "dropoff")
    finally:
        loaded.close()
    # Without the cut the oracle wins every episode (an optimal drop-off takes up to 9 steps); the seeds are the same.
    evaluate(OracleAgent(), replace(CONFIG, horizon=None), description="oracle").write(out / "eval-oracle" / "dropoff")
    # A data stage's resume journal is no evaluation: the page leaves it out.
    (out / "data" / ".progress").mkdir(parents=True)
    (out / "data" / ".progress" / "episodes.jsonl").write_text('{"seed": 1}\n')
    return out


def _records(folder: Path) -> list[dict]:
    return read_episodes(folder / "episodes.jsonl")


def test_an_evaluation_records_each_steps_menu_labels_and_the_policys_probabilities(run_folder):
    records = _records(run_folder / "eval-reflect" / "dropoff")
    steps = [step for record in records for step in record["trajectory"]]
    assert steps
    for step in steps:
        menu, probs = step["menu"], step["probs"]
        assert len(probs) == len(menu) == len(step["labels"]) == len(set(step["labels"]))
        assert sum(probs) == pytest.approx(1.0, abs=1e-3) and all(0.0 <= p <= 1.0 for p in probs)
        # Greedy evaluation: the chosen entry is the most likely one, and the judge saw the same menu.
        assert step["action"] == menu[max(range(len(menu)), key=probs.__getitem__)]
        assert step["judged"]["oracle"] in menu
    # The probabilities are the distribution the log-probability of the choice came from.
    result = evaluate(
        load_agent(AgentSpec("plain", policy="tiny-random", device="cpu")).agent, EvalConfig("taxi", episodes=2, level="dropoff")
    )
    for step in (s for e in result.episodes for s in e.steps):
        assert math.log(step.probs[step.action]) == pytest.approx(step.log_prob, abs=1e-5)
        assert step.labels and step.menu[step.action] == step.action_text
    # Scripted players have no distribution: their steps keep the menu only.
    oracle = _records(run_folder / "eval-oracle" / "dropoff")[0]["trajectory"][0]
    assert "menu" in oracle and "probs" not in oracle and "labels" not in oracle


def test_outcomes_and_the_first_mistake_come_from_the_records():
    def record(success, truncated, steps):
        return {"success": success, "truncated": truncated, "trajectory": steps}

    assert outcome(record(True, False, [])) == WON
    assert outcome(record(False, True, [])) == OUT_OF_STEPS
    assert outcome(record(False, False, [])) == CRASHED
    good = {"judged": {"oracle": "a", "chosen_ok": True}}
    bad = {"judged": {"oracle": "a", "chosen_ok": False}}
    unjudgeable = {"judged": {"oracle": None}}
    assert went_wrong(record(False, False, [good, unjudgeable, bad, bad])) == 2
    assert went_wrong(record(False, False, [good, {"invalid": True}, bad])) == 1
    assert went_wrong(record(True, False, [good, {}])) is None


def test_a_run_folder_offers_one_row_per_evaluation_and_a_second_folder_pairs_by_name(run_folder, tmp_path):
    files = find_episode_files(run_folder)
    assert [f.relative_to(run_folder).as_posix() for f in files] == ["eval-oracle/dropoff/episodes.jsonl", "eval-reflect/dropoff/episodes.jsonl"]
    rows = load_evaluations(run_folder)
    assert [(r.source, r.name, r.agent) for r in rows][0] == ("run", "eval-oracle/dropoff", "oracle")
    assert rows[1].agent.startswith("Reflect-RL") and len(rows[1].episodes) == 8
    single = load_evaluations(run_folder / "eval-reflect" / "dropoff")
    assert [(r.source, r.name) for r in single] == [("dropoff", "dropoff")]
    assert load_evaluations(run_folder / "eval-oracle" / "dropoff" / "episodes.jsonl")[0].name == "dropoff"

    data = page_data(rows, "t")
    assert (data["left"], data["right"]) == (0, None)
    reflect = data["rows"][1]["episodes"]
    assert [e["outcome"] for e in reflect] == [outcome(r) for r in rows[1].episodes]
    assert [e["key"] for e in reflect] == [e["key"] for e in data["rows"][0]["episodes"]]  # same seeds, same keys
    assert page_data(rows, "t", shown=("eval-reflect/dropoff", "eval-oracle/dropoff"))[("left")] == 1
    # Two folders: the second one's evaluation of the same name opens beside the first.
    copy = tmp_path / "other"
    shutil.copytree(run_folder, copy)
    both = load_evaluations(run_folder) + load_evaluations(copy)
    assert page_data(both, "t", compare=True)["right"] == 2


def test_unreadable_inputs_are_refused_with_the_reason(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_episode_files(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="holds no episodes.jsonl"):
        find_episode_files(tmp_path)
    (tmp_path / "episodes.jsonl").write_text('{"seed": 1}\n')
    with pytest.raises(ValueError, match="line 1: not an evaluated episode"):
        load_evaluations(tmp_path)
    (tmp_path / "episodes.jsonl").write_text("{not json\n")
    with pytest.raises(ValueError, match="line 1: not JSON"):
        load_evaluations(tmp_path)
    result = runner.invoke(app, ["view", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "Error:" in result.output and "does not exist" in result.output


def _hostile_copy(run_folder: Path, folder: Path) -> Path:
    """The reflective agent's evaluation with hostile text in a task, an observation and a reflection, menus and
    probabilities removed (an older file)."""
    records = _records(run_folder / "eval-reflect" / "dropoff")
    for record in records:
        record["task"] = HOSTILE
        for step in record["trajectory"]:
            step["observation"] = HOSTILE + step["observation"]
            step["reflection"] = HOSTILE
            for key in ("menu", "labels", "probs"):
                step.pop(key)
    folder.mkdir(parents=True)
    (folder / "episodes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


def test_recorded_text_stays_data_in_the_html(run_folder, tmp_path):
    rows = load_evaluations(_hostile_copy(run_folder, tmp_path / "hostile"))
    page = render_page(page_data(rows, "a <b> & 'c'"))
    assert page.count("</script>") == 2 and HOSTILE not in page and "<!--" not in page  # only the page's own two scripts
    assert "<title>a &lt;b&gt; &amp; &#x27;c&#x27;</title>" in page
    embedded = page.split('id="reflectrl-data">', 1)[1].split("</script>", 1)[0]
    assert json.loads(embedded)["rows"][0]["episodes"][0]["task"] == HOSTILE


# ------------------------------------------------------------------ in a real headless browser
@pytest.fixture(scope="module")
def chromium():
    reason = browser.unavailable()
    if reason:
        pytest.skip(reason)
    driver = browser.start()
    yield driver
    driver.quit()


def _by(driver, css: str):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, css)


def _visible_episodes(driver) -> int:
    return len(_by(driver, "#episodes li"))


def test_the_page_loads_cleanly_filters_the_list_and_expands_a_step(chromium, run_folder):
    result = runner.invoke(app, ["view", str(run_folder)])
    assert result.exit_code == 0, result.output
    page = run_folder / "view.html"
    assert f"wrote {page}" in result.output and "2 evaluations, 16 episodes" in result.output
    browser.open_file(chromium, page)
    assert browser.console_errors(chromium) == []
    assert chromium.title == "Episodes of run"

    # Show the reflective agent's row (the page opens on the first, the oracle's).
    from selenium.webdriver.support.ui import Select

    Select(_by(chromium, "#row-left")[0]).select_by_index(1)
    records = _records(run_folder / "eval-reflect" / "dropoff")
    assert _visible_episodes(chromium) == len(records) == 8
    for name, expected in [
        ("crashed", sum(outcome(r) == CRASHED for r in records)),
        ("out-of-steps", sum(outcome(r) == OUT_OF_STEPS for r in records)),
        ("won", 0),
    ]:
        _by(chromium, f'#filters button[data-filter="{name}"]')[0].click()
        assert _visible_episodes(chromium) == expected, name
        assert _by(chromium, "#count")[0].text == f"{expected} of 8 episodes"
    assert 0 < sum(outcome(r) == CRASHED for r in records) < 8  # the filters above did change the list
    _by(chromium, '#filters button[data-filter="won"]')[0].click()
    assert "No episode matches" in _by(chromium, "#detail")[0].text
    _by(chromium, '#filters button[data-filter="all"]')[0].click()

    # Pick the third episode, then open its first step.
    _by(chromium, "#episodes li button")[2].click()
    record = records[2]
    step = record["trajectory"][0]
    details = _by(chromium, '.column details.step[data-step="1"]')[0]
    observation = details.find_element("css selector", "pre.observation")
    assert details.get_attribute("open") is None and not observation.is_displayed()
    details.find_element("css selector", "summary").click()
    assert details.get_attribute("open") == "true" and observation.is_displayed()
    assert observation.get_attribute("textContent") == step["observation"]
    menu = details.find_elements("css selector", "table.menu tr")
    assert [row.find_elements("css selector", "td")[1].text for row in menu] == step["menu"]
    chosen = details.find_element("css selector", "table.menu tr.chosen")
    assert step["action"] in chosen.text and "chosen" in chosen.text
    assert f"{100 * max(step['probs']):.1f}%" in chosen.text
    assert ("oracle" in details.text) and step["judged"]["oracle"] in details.text
    wrong = went_wrong(record)
    if wrong is not None:
        marked = _by(chromium, ".column details.step.first-mistake")
        assert [m.get_attribute("data-step") for m in marked] == [str(wrong + 1)]
        assert "went wrong here" in marked[0].text
    assert browser.console_errors(chromium) == []


def test_two_folders_show_the_same_seed_side_by_side(chromium, run_folder, tmp_path):
    out = tmp_path / "compare.html"
    result = runner.invoke(app, ["view", str(run_folder / "eval-reflect" / "dropoff"), str(run_folder / "eval-oracle" / "dropoff"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    browser.open_file(chromium, out)
    reflect = _records(run_folder / "eval-reflect" / "dropoff")
    oracle = _records(run_folder / "eval-oracle" / "dropoff")
    # The oracle wins every episode, the tiny agent (nearly) none.
    differ = sum(a["success"] != b["success"] for a, b in zip(reflect, oracle))
    assert all(b["success"] for b in oracle) and differ > 0
    _by(chromium, '#filters button[data-filter="differ"]')[0].click()
    assert _visible_episodes(chromium) == differ
    _by(chromium, '#filters button[data-filter="all"]')[0].click()
    for index in (0, 5):
        _by(chromium, "#episodes li button")[index].click()
        columns = _by(chromium, "#detail .column")
        assert len(columns) == 2
        seed = f"seed {reflect[index]['seed']} "
        assert all(seed in column.find_element("css selector", ".facts").text for column in columns)
        assert "Reflect-RL" in columns[0].text and "oracle" in columns[1].find_element("css selector", "h2").text
        assert len(columns[0].find_elements("css selector", "details.step")) == len(reflect[index]["trajectory"])
        assert len(columns[1].find_elements("css selector", "details.step")) == len(oracle[index]["trajectory"])
    _by(chromium, "#swap")[0].click()
    assert "oracle" in _by(chromium, "#detail .column h2")[0].text
    assert browser.console_errors(chromium) == []


def test_hostile_text_is_shown_as_text_and_a_file_without_menus_still_shows_the_moves(chromium, run_folder, tmp_path):
    folder = _hostile_copy(run_folder, tmp_path / "hostile")
    page, _ = write_page([folder], tmp_path / "hostile.html")
    browser.open_file(chromium, page)
    assert chromium.execute_script("return window.hacked === undefined")
    details = _by(chromium, '.column details.step[data-step="1"]')[0]
    details.find_element("css selector", "summary").click()
    assert details.find_element("css selector", "pre.observation").get_attribute("textContent").startswith(HOSTILE)
    assert details.find_element("css selector", ".reflection").text == HOSTILE
    assert "no menu or probabilities" in details.text
    played = _records(folder)[0]["trajectory"][0]
    rows = [row.text for row in details.find_elements("css selector", "table.menu tr")]
    assert any(row.startswith(played["action"]) and "chosen" in row for row in rows)
    assert any(row.startswith(played["judged"]["oracle"]) and "oracle" in row for row in rows)
    assert _by(chromium, "img") == []
    assert browser.console_errors(chromium) == []
