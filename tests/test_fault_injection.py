"""Fault injection (issue 36): the tiny pipeline killed with SIGKILL at random points, torn tails written into
the files its resume reads between the kills, and at the end the very report and adapters of a straight run.

How it works:

* Processes. A helper process imports the heavy packages once and forks every pipeline run from there,
  each running ``reflectrl pipeline taxi --preset tiny --out RUN --quiet`` through the CLI's own entry point
  in a process of its own, which the test kills. Starting a fresh interpreter each time would spend the
  time budget on imports (7 s a start on the CI's two cores) instead of on progress.
* Kill points. Every stage has marks of progress (gen-data's journal lines, SFT checkpoints and results,
  RL metrics lines, checkpoints and final adapters, reflection-cache lines, each stage's DONE record). A
  seeded draw picks `KILLS` of them, spread over data, SFT, RL and evaluation; each run is killed a seeded
  random delay after the first picked mark it had not reached when it started, so it lands anywhere
  between two writes. Every mark holds once its stage is done, so every run gets past at least one.
* Torn tails. Between two runs, up to two files a resume reads (gen-data's journal, the reflection caches,
  RL metrics.jsonl, the JSON files of SFT and RL checkpoints), drawn among those present and still
  to be read, get what a kill in the middle of a write leaves: a line cut short (inside a UTF-8
  character) or a prefix of garbage without its newline.
* The check. The straight run and the killed one run in the same folder (the straight one is renamed
  away before the other starts), since the report records the command with its ``--out``; the report
  and every final adapter's weights must be the same bytes, and no temporary file or folder of a killed
  writer may be left in the run folder.

``FAULT_INJECTION_SEED=N`` draws other kill points and tears (the default is the one CI runs).
"""

from __future__ import annotations

import json
import os
import random
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from reflectrl.pipeline.plan import stage_names
from reflectrl.pipeline.presets import preset
from reflectrl.pipeline.stages import DONE

pytestmark = [
    pytest.mark.slow,  # 1 to 2 minutes on two cores: two whole pipelines plus the work the kills throw away
    pytest.mark.skipif(sys.platform != "linux", reason="forks the runs and reads /proc"),
]

SEED = int(os.environ.get("FAULT_INJECTION_SEED", "36"))
KILLS = {"data": 6, "sft": 10, "rl": 13, "eval": 10}
"""Kill points drawn per part of the pipeline (at least 20 kills happen in all; see the test)."""
ATTEMPT_LIMIT_S = 240
COMMAND = ["pipeline", "taxi", "--preset", "tiny", "--quiet", "--out"]

FORK_SERVER = r"""
import importlib, json, os, sys, traceback
for name in ("torch", "transformers", "peft", "datasets", "safetensors.torch", "transformers.trainer",
             "transformers.models.llama.modeling_llama", "torch.utils.tensorboard", "matplotlib.pyplot",
             "reflectrl.cli.main", "reflectrl.pipeline.run", "reflectrl.trainers.sft", "reflectrl.trainers.online",
             "reflectrl.evaluation.harness", "reflectrl.datagen"):
    try:
        importlib.import_module(name)
    except ImportError:
        pass
if os.path.isdir("/proc/self/task") and len(os.listdir("/proc/self/task")) > 1:
    # A fork copies only the forking thread: a lock another thread held would stay locked in every run.
    names = [open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task")]
    sys.exit(f"the fork server runs threads {names}; it must fork from a single thread")
requests = os.fdopen(0, "rb", buffering=0)
while True:
    line = b""
    while not line.endswith(b"\n"):
        chunk = requests.read(1)
        if not chunk:
            os._exit(0)
        line += chunk
    request = json.loads(line)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
            sys.argv = ["reflectrl", *request["args"]]
            from reflectrl.cli.main import app
            try:
                app(request["args"], prog_name="reflectrl")
                code = 0
            except SystemExit as end:
                code = end.code if isinstance(end.code, int) else (0 if end.code is None else 1)
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    os.write(1, (json.dumps({"pid": pid}) + "\n").encode())
    _, status = os.waitpid(pid, 0)
    signalled = os.WIFSIGNALED(status)
    report = {"signal": os.WTERMSIG(status) if signalled else None, "code": None if signalled else os.WEXITSTATUS(status)}
    os.write(1, (json.dumps(report) + "\n").encode())
"""


class ForkServer:
    """The helper process that forks pipeline runs (see the module docstring)."""

    def __init__(self, logs: Path):
        env = {
            **os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "MPLBACKEND": "Agg",
            "JE_ARROW_MALLOC_CONF": "background_thread:false",  # pyarrow's allocator would start a thread at import
        }
        self.process = subprocess.Popen(
            [sys.executable, "-c", FORK_SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0, env=env
        )
        self.logs = logs
        self.buffer = b""
        self.running: int | None = None
        """The process id of the run started last, until its end is reported."""

    def start(self, args: list[str], name: str) -> int:
        """Fork a run of ``reflectrl ARGS`` (its output in LOGS/NAME.log); returns its process id."""
        request = {"args": args, "log": str(self.logs / f"{name}.log")}
        self.process.stdin.write((json.dumps(request) + "\n").encode())
        started = self._message(timeout=120)
        assert started is not None, f"the fork server did not answer (exit status {self.process.poll()})"
        self.running = int(started["pid"])
        return self.running

    def wait(self, timeout: float) -> dict | None:
        """How the run ended ({"signal": ..., "code": ...}), or None while it still runs after `timeout` seconds."""
        ended = self._message(timeout)
        if ended is not None:
            self.running = None
        return ended

    def _message(self, timeout: float) -> dict | None:
        """The helper's next line, or None when none arrives within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.process.stdout], [], [], left)[0]:
                return None
            chunk = os.read(self.process.stdout.fileno(), 4096)
            assert chunk, "the fork server ended"
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def close(self) -> None:
        if self.running is not None:  # a failed check left it running: it must not outlive the test
            os.kill(self.running, signal.SIGKILL)
            self.wait(timeout=60)
        self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)


# ------------------------------------------------------------------------------------ marks of progress
@dataclass(frozen=True)
class Mark:
    """A point the pipeline passes; `holds(run)` stays true from then on (every mark holds once its stage is done)."""

    part: str
    """data, sft, rl or eval."""
    name: str
    test: Callable[[Path], bool]
    stage: str

    def holds(self, run: Path) -> bool:
        return (run / self.stage / DONE).is_file() or self.test(run / self.stage)


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except OSError:
        return 0


def _sft_steps(folder: Path) -> int:
    steps = [0]
    for state in folder.glob("checkpoints/checkpoint-*/trainer_state.json"):
        try:
            steps.append(int(json.loads(state.read_text())["global_step"]))
        except (OSError, ValueError, KeyError):
            pass
    return max(steps)


def _rl_iteration(folder: Path) -> int:
    names = [p.name for p in (folder / "run" / "checkpoints").glob("iter-*") if (p / "MANIFEST.json").is_file()]
    return max([int(n.split("-")[1]) for n in names] or [0])


def marks(stages: list[str]) -> list[Mark]:
    """Every mark of the tiny pipeline, in the order a straight run passes them."""
    tiny = preset("tiny", "taxi")
    found: list[Mark] = []
    for stage in stages:
        if stage == "data":
            found.append(Mark("data", "settings recorded", lambda f: (f / ".progress" / "config.json").is_file(), stage))
            found += [
                Mark("data", f"episode {n} journaled", lambda f, n=n: _lines(f / ".progress" / "episodes.jsonl") >= n, stage)
                for n in range(1, tiny.data.episodes + 1)
            ]
        elif stage.startswith("sft-"):
            steps = range(1, tiny.sft["max_steps"] + 1)
            found += [Mark("sft", f"{stage} step {n}", lambda f, n=n: _sft_steps(f) >= n, stage) for n in steps]
            found.append(Mark("sft", f"{stage} result", lambda f: (f / "metrics.json").is_file(), stage))
        elif stage.startswith("rl-"):
            for n in range(1, tiny.rl.iterations + 1):
                found.append(Mark("rl", f"{stage} metrics {n}", lambda f, n=n: _lines(f / "run" / "metrics.jsonl") >= n, stage))
                found.append(Mark("rl", f"{stage} checkpoint {n}", lambda f, n=n: _rl_iteration(f) >= n, stage))
            found.append(Mark("rl", f"{stage} final", lambda f: (f / "final" / "adapter_config.json").is_file(), stage))
        elif stage.startswith("eval-"):
            if stage == "eval-sft-reflect":  # the first stage that asks the SFT reflector: its cache fills up
                cache = "reflection-cache/sft-reflector.jsonl"
                found += [Mark("eval", f"cache line {n}", lambda f, n=n: _lines(f.parent / cache) >= n, stage) for n in (2, 4, 6)]
        found.append(Mark(stage.split("-")[0], f"{stage} done", lambda f: False, stage))
    return found


def kill_points(rng: random.Random, stages: list[str]) -> list[Mark]:
    every = marks(stages)
    picked: list[Mark] = []
    for part, count in KILLS.items():
        candidates = [m for m in every if m.part == part]
        picked += rng.sample(candidates, min(count, len(candidates)))
    return sorted(picked, key=every.index)


# ------------------------------------------------------------------------------------ torn tails
TORN_KINDS = {
    "journal": ["data/.progress/episodes.jsonl"],
    "reflection cache": ["reflection-cache/*.jsonl"],
    "RL metrics": ["*/run/metrics.jsonl"],
    # An SFT checkpoint's state file is written last and in place; the rest of it goes in before.
    "SFT checkpoint": ["sft-*/checkpoints/checkpoint-*/trainer_state.json", "sft-*/checkpoints/checkpoint-*/run_identity.json"],
    "RL checkpoint": ["rl-*/run/checkpoints/iter-*/*.json"],
}
"""Files a resume reads, by kind."""


def resume_inputs(run: Path) -> dict[str, list[Path]]:
    """The files of each kind that a resume of the stages not done yet reads (the caches serve every later evaluation)."""
    def live(path: Path) -> bool:
        stage = path.relative_to(run).parts[0]
        return path.is_file() and path.stat().st_size > 0 and (stage == "reflection-cache" or not (run / stage / DONE).is_file())

    found = {kind: sorted({p for pattern in patterns for p in run.glob(pattern)}) for kind, patterns in TORN_KINDS.items()}
    return {kind: live_files for kind, files in found.items() if (live_files := [p for p in files if live(p)])}


def tear(path: Path, rng: random.Random) -> str:
    """Leave in `path` what a kill during its last write would: a cut line or the start of one."""
    data = path.read_bytes()
    if rng.random() < 0.5:
        # The start of a line that was being appended: text, then a character cut after its first byte.
        garbage = bytes(rng.choice(b'{"prompt": "reflection episode 0123456789,:[]}') for _ in range(rng.randint(0, 40)))
        path.write_bytes(data + garbage + "é".encode()[:1])
        return f"{len(garbage) + 1} bytes of a torn line appended to {path}"
    body = data[:-1] if data.endswith(b"\n") else data
    start = body.rfind(b"\n") + 1
    cut = rng.randint(start, len(body))
    path.write_bytes(data[:cut] + "ü".encode()[:1])  # the cut falls inside a two-byte character
    return f"{path} cut at byte {cut} of {len(data)}, inside a character"


# ------------------------------------------------------------------------------------ the test
def _results(run: Path) -> dict[str, bytes]:
    """The report and every final adapter's weights (checkpoints are intermediate)."""
    found = {"report.md": (run / "report.md").read_bytes()}
    for weights in sorted(run.glob("**/*.safetensors")):
        relative = weights.relative_to(run)
        if "checkpoints" not in relative.parts:
            found[str(relative)] = weights.read_bytes()
    return found


def _running_part(run: Path) -> str:
    """The part of the pipeline the run was in: that of its first stage not done."""
    stage = next((name for name in stage_names("core") if not (run / name / DONE).is_file()), "report-")
    return stage.split("-")[0]


def _run_to_end(server: ForkServer, run: Path, name: str) -> None:
    server.start(COMMAND + [str(run)], name)
    status = server.wait(timeout=ATTEMPT_LIMIT_S)
    log = (server.logs / f"{name}.log").read_text(errors="replace")
    assert status == {"signal": None, "code": 0}, f"{name} ended with {status}:\n{log[-6000:]}"


def test_a_pipeline_killed_twenty_times_with_torn_files_ends_like_a_straight_run(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    run = tmp_path / "run"
    rng = random.Random(SEED)
    points = kill_points(rng, stage_names("core"))
    server = ForkServer(logs)
    started = time.monotonic()
    try:
        _run_to_end(server, run, "straight")
        straight = _results(run)
        run.rename(tmp_path / "straight")

        history: list[str] = []
        kills_by_part: dict[str, int] = {}
        torn: dict[str, int] = {}
        for attempt in range(1, 3 * len(points)):
            pending = [m for m in points if not m.holds(run)]
            if not pending:
                break
            # gen-data journals the tiny preset's episodes within milliseconds: a longer delay would skip its marks.
            target, delay = pending[0], rng.uniform(0.0, 0.02 if pending[0].part == "data" else 0.2)
            pid = server.start(COMMAND + [str(run)], f"attempt-{attempt:02d}")
            deadline = time.monotonic() + ATTEMPT_LIMIT_S
            status = None
            while status is None and not target.holds(run):
                assert time.monotonic() < deadline, f"attempt {attempt} never reached {target.name}"
                status = server.wait(timeout=0.01)
            if status is None:
                status = server.wait(timeout=delay)
            if status is None:
                os.kill(pid, signal.SIGKILL)
                status = server.wait(timeout=60)
            log = (logs / f"attempt-{attempt:02d}.log").read_text(errors="replace")
            assert status is not None and (status["signal"] == signal.SIGKILL or status["code"] == 0), (
                f"attempt {attempt} (after: {history[-3:]}) ended with {status}:\n{log[-6000:]}"
            )
            if status["signal"] == signal.SIGKILL:
                part = _running_part(run)
                kills_by_part[part] = kills_by_part.get(part, 0) + 1
                history.append(f"attempt {attempt}: killed {delay:.2f} s after {target.name} (in {part})")
            present = resume_inputs(run)
            for kind in rng.sample(sorted(present), min(len(present), rng.randint(1, 2))):
                history.append(tear(rng.choice(present[kind]), rng))
                torn[kind] = torn.get(kind, 0) + 1
        _run_to_end(server, run, "last")
    finally:
        server.close()
    elapsed = time.monotonic() - started
    print(f"{sum(kills_by_part.values())} kills {kills_by_part}, torn files {torn}, in {elapsed:.0f} s", *history, sep="\n")

    assert _results(run) == straight, "\n".join(history)
    # Temporary files and folders of killed writers are cleared by the writes that redo their work.
    assert not [str(p) for p in run.rglob(".*") if p.name != ".progress"], "\n".join(history)
    assert sum(kills_by_part.values()) >= 20 and all(kills_by_part.get(part, 0) >= 1 for part in KILLS), kills_by_part
    assert set(torn) == set(TORN_KINDS), torn
