"""Local worker processes of a pipeline: one run's independent stages side by side, and ending with the parent.

``reflectrl pipeline ENV --parallel N`` (without ``--seeds``) runs up to N stages of one run at once, each in a
process of its own with the torch threads split between them: a stage starts as soon as the stages it reads
(`Stage.needs`) are done, and two stages that append to the same file (`Stage.shares`, an evaluation reflection
cache) never run together. The reflector's SFT, for example, runs beside the policies' SFT and RL without
reflection. On a few cores this is faster than one stage with all the threads: most of a small model's work
(decoding, short sequences) does not keep several threads busy. Peak memory is that of the stages that run
together.

Which stages run together changes only when each one runs, not what it computes: each process has the same
number of threads from start to end, and every stage seeds its own random draws, so a run gives the same bytes
as the same run one stage after another with that many threads.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from reflectrl.pipeline.stages import Stage


def run_stages_in_processes(
    stages: Sequence[Stage], finished: set[str], parallel: int, worker: Callable[[Any], None], jobs: dict[str, Any],
    log: Callable[[str], None],
) -> None:
    """Run every stage of `stages` not in `finished`, at most `parallel` at once, as ``worker(jobs[name])`` in
    spawned processes; a stage starts when its `Stage.needs` are finished and no running stage shares its file.

    When a stage fails no other starts; those running are let finish (their work is kept), then the first failure is
    raised. `worker` must be a module-level function (it is sent to the processes by name).
    """
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

    finished = set(finished)
    pending = [stage for stage in stages if stage.name not in finished]
    known = {stage.name for stage in stages} | finished
    for stage in pending:
        missing = [need for need in stage.needs if need not in known]
        if missing:
            raise ValueError(f"stage {stage.name!r} needs {', '.join(missing)}, which this run does not make")
    running: dict[Future, Stage] = {}
    failure: tuple[str, BaseException] | None = None
    # spawn: a forked child would inherit torch's thread pool and locks mid-use.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=parallel, mp_context=context, initializer=exit_with_parent, initargs=(os.getpid(),)) as pool:
        while pending or running:
            while failure is None and len(running) < parallel:
                shared = {stage.shares for stage in running.values() if stage.shares}
                ready = next(
                    (s for s in pending if all(n in finished for n in s.needs) and (s.shares is None or s.shares not in shared)), None
                )
                if ready is None:
                    break
                pending.remove(ready)
                running[pool.submit(worker, jobs[ready.name])] = ready
            if not running:
                break  # after a failure: nothing else starts
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                stage = running.pop(future)
                error = future.exception()
                if error is None:
                    finished.add(stage.name)
                elif failure is None:
                    failure = (stage.name, error)
                    if running:
                        log(f"[{stage.name}] failed ({error}); no other stage starts, waiting for "
                            f"{', '.join(s.name for s in running.values())} to finish (a re-run resumes the rest)")
    if failure is not None:
        name, error = failure
        raise RuntimeError(f"stage {name} failed: {error}") from error


def exit_with_parent(parent: int, poll_s: float = 1.0) -> None:
    """End this worker process as soon as the process that started it is gone.

    Ctrl-C reaches every process of the terminal's group, but a ``kill`` of the parent alone (a job scheduler's
    timeout, a user stopping the run by its PID) would leave the workers training on, unseen, and a re-run of the
    same command would then train the same stage in the same folder twice over. Exiting at once is what a kill does:
    every stage writes its results atomically, so the re-run resumes from the last checkpoint.
    """
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
