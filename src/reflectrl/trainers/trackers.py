"""Experiment trackers (``--report-to``): TensorBoard, Weights & Biases, MLflow and trackio.

An RL run reports through accelerate's trackers (`accelerate.tracking`); an SFT
run opens the same trackers and lets transformers' ``report_to`` integrations
stream the `Trainer`'s logs into those runs. Either way a tracker run gets the
run's settings once, as its config, and then the metrics per iteration (RL,
under the names of ``metrics.jsonl``) or per logging step (SFT).
``metrics.jsonl`` and ``metrics.json`` are written whatever the choice: the
plots and reports read them.

Each tracker is set up by its own environment variables: ``WANDB_MODE=offline``
and ``WANDB_DIR`` for Weights & Biases, ``MLFLOW_TRACKING_URI`` for MLflow
(MLflow's default: ``sqlite:///mlflow.db`` in the working folder), ``WANDB_PROJECT`` and
``MLFLOW_EXPERIMENT_NAME`` for the project, which is otherwise `PROJECT`.

A resumed run opens new tracker runs, from the iteration after its checkpoint:
the runs of the attempt that died already hold the iterations it does again,
which W&B would refuse and MLflow would hold twice. TensorBoard alone continues
in the same folder, hiding its events of those iterations (``purge_step``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

TRACKERS = ("tensorboard", "wandb", "mlflow", "trackio")
"""The names ``--report-to`` takes (accelerate's and transformers' names for them)."""
DEFAULT_REPORT_TO = ("tensorboard",)
"""What a run reports to unless told otherwise."""
NONE = "none"
"""``--report-to none``: metrics.jsonl only."""
PROJECT = "reflectrl"
"""The W&B and trackio project, and the MLflow experiment, that runs are filed under."""
TENSORBOARD = "tensorboard"
"""Folder of an RL run's TensorBoard events, inside the run folder."""
_INSTALL = {
    "tensorboard": "pip install tensorboard",
    "wandb": "pip install 'reflectrl[trackers]'",
    "mlflow": "pip install 'reflectrl[trackers]'",
    # Not in the extra: current releases cap pillow below what the rest installs, older ones lack trackio.config.
    "trackio": "pip install trackio",
}


class TrackerError(ValueError):
    """An unknown tracker name, or a tracker whose package is not installed (the message says how to install it)."""


def parse_report_to(text: str) -> tuple[str, ...]:
    """The trackers a comma-separated ``--report-to`` names, in order and once each ("none": no tracker); checked."""
    names = tuple(dict.fromkeys(part.strip().lower() for part in text.split(",") if part.strip()))
    if names == (NONE,):
        return ()
    if NONE in names:
        raise TrackerError(f"--report-to {NONE} means no tracker; it does not go with {', '.join(n for n in names if n != NONE)}")
    check_report_to(names)
    return names


def check_report_to(names: Sequence[str]) -> None:
    """Raise `TrackerError` unless every name is a tracker in `TRACKERS` whose package is installed."""
    unknown = [name for name in names if name not in TRACKERS]
    if unknown:
        raise TrackerError(f"unknown tracker {', '.join(unknown)}; choose from {', '.join(TRACKERS)} (comma-separated), or {NONE}")
    if not names:
        return
    from accelerate.tracking import get_available_trackers

    installed = {str(tracker) for tracker in get_available_trackers()}
    missing = [name for name in names if name not in installed]
    if missing:
        how = " and ".join(sorted({_INSTALL[name] for name in missing}))
        raise TrackerError(f"--report-to {', '.join(missing)}: not installed; install it with {how}")


def flat_settings(settings: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """`settings` as one level of scalars, nested names joined by "/": the config a tracker run takes.

    Lists and tuples become JSON text: TensorBoard's and MLflow's run parameters are single values.
    """
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flat_settings(value, f"{name}/"))
        elif value is None or isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:
            flat[name] = json.dumps(value, sort_keys=True, default=str)
    return flat


def scalars(record: Mapping[str, Any]) -> dict[str, float | int]:
    """The finite numbers of `record`: what a tracker plots (text such as the level stays in metrics.jsonl)."""
    return {
        key: value for key, value in record.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    }


class RunTrackers:
    """The tracker runs of one training run: opened together (at the first `log`, or by `start`), given the
    run's settings once, then the metrics of each step, and closed together by `finish`."""

    def __init__(self, names: Sequence[str], folder: str | os.PathLike, run_name: str, settings: Mapping[str, Any]):
        """
        Args:
            names: trackers from `TRACKERS` (checked here, so that a missing package fails before training).
            folder: the run folder; TensorBoard writes into its `TENSORBOARD` folder.
            run_name: the run's name in the trackers.
            settings: the run's settings, logged once per tracker run (`flat_settings`).
        """
        check_report_to(names)
        self.names = tuple(names)
        self.folder = Path(folder)
        self.run_name = run_name
        self.settings = dict(settings)
        self._open: list[Any] = []
        self._started = False

    def start(self, first_step: int = 0) -> None:
        """Open the tracker runs and log the settings; `first_step` > 1 hides the TensorBoard events from it on
        (those of iterations that a resumed run does again)."""
        if self._started:
            return
        from accelerate.tracking import MLflowTracker, TensorBoardTracker, TrackioTracker, WandBTracker

        self._started = True
        makers = {
            "tensorboard": lambda: TensorBoardTracker(TENSORBOARD, self.folder, purge_step=first_step if first_step > 1 else None),
            # An explicit project would override the variable.
            "wandb": lambda: WandBTracker(os.environ.get("WANDB_PROJECT") or PROJECT, name=self.run_name),
            "mlflow": lambda: MLflowTracker(experiment_name=PROJECT, run_name=self.run_name),
            "trackio": lambda: TrackioTracker(PROJECT, name=self.run_name),
        }
        config = flat_settings(self.settings)
        for name in self.names:
            tracker = makers[name]()
            tracker.start()
            self._open.append(tracker)
            tracker.store_init_configuration(config)

    def log(self, record: Mapping[str, Any], step: int) -> None:
        """Log the numbers of `record` at `step` to every tracker (opening them at the first call)."""
        if not self.names:
            return
        self.start(step)
        values = scalars(record)
        for tracker in self._open:
            tracker.log(values, step=step)

    def finish(self) -> None:
        """Close the tracker runs (a later `log` opens new ones)."""
        open_trackers, self._open, self._started = self._open, [], False
        for tracker in open_trackers:
            tracker.finish()
