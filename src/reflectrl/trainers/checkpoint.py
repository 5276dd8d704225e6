"""Atomic training checkpoints.

A checkpoint is a folder `RUN/checkpoints/iter-NNNNNN/` holding whatever the
trainer writes (adapter, value head, optimizer, RNG states, replay buffer,
curriculum and trainer state) plus a `MANIFEST.json` with the size and SHA-256
of every file. It is written into a hidden temporary folder next to it,
flushed to disk, and only then renamed into place; a rename within one
filesystem is atomic, so a kill at any moment leaves either the complete new
checkpoint or none (plus a hidden temporary folder that the next save
removes). `latest_checkpoint` returns the newest folder whose manifest
verifies, so even a damaged disk falls back to an older complete checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from reflectrl.players.policy import LabelPolicy

CHECKPOINTS = "checkpoints"
MANIFEST = "MANIFEST.json"
_NAME = re.compile(r"^iter-(\d{6,})$")
_TEMP_PREFIX = ".tmp-"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete or does not match the run."""


def checkpoint_name(iteration: int) -> str:
    return f"iter-{iteration:06d}"


def save_checkpoint(run_dir: str | Path, iteration: int, write: Callable[[Path], None], keep: int = 2) -> Path:
    """Write a checkpoint atomically: `write(folder)` fills a temporary folder that is then renamed into place.

    Keeps the newest `keep` checkpoints (0 keeps all). Returns the final folder.
    """
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    _remove_temporaries(root)
    name = checkpoint_name(iteration)
    temp = Path(tempfile.mkdtemp(prefix=f"{_TEMP_PREFIX}{name}-", dir=root))
    try:
        write(temp)
        _write_manifest(temp, iteration)
        _fsync_tree(temp)
        final = root / name
        if final.exists():
            # Re-saving an iteration (identical state after an exact resume):
            # move the old copy aside first so the rename below cannot fail.
            _discard(final)
        os.replace(temp, final)
        _fsync_dir(root)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    _remove_temporaries(root)
    if keep > 0:
        for _, old in _numbered(root)[:-keep]:
            _discard(old)
    return final


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of a run (manifest verified), or None if there is none."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return None
    for _, folder in reversed(_numbered(root)):
        if verify_checkpoint(folder):
            return folder
    return None


def verify_checkpoint(folder: str | Path) -> bool:
    """True when the folder's manifest exists and every listed file has its recorded size and hash."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        for rel, meta in manifest["files"].items():
            path = folder / rel
            if path.stat().st_size != meta["size"] or file_sha256(path) != meta["sha256"]:
                return False
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return True


def checkpoint_iteration(folder: str | Path) -> int:
    """The iteration number recorded in a checkpoint's manifest."""
    try:
        return int(json.loads((Path(folder) / MANIFEST).read_text())["iteration"])
    except (OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{folder} is not a complete checkpoint: {exc}") from exc


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, sort_keys=True))


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def capture_rng_state() -> dict[str, Any]:
    """The global random states a training step may touch (Python, NumPy, torch CPU and CUDA), as JSON-able data."""
    kind, key, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state = {
        "python": _plain(random.getstate()),
        "numpy": [kind, key.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state().tolist(),
    }
    if torch.cuda.is_available():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Undo `capture_rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, key, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(key, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _numbered(root: Path) -> list[tuple[int, Path]]:
    found = []
    for child in root.iterdir():
        match = _NAME.match(child.name)
        if match and child.is_dir():
            found.append((int(match.group(1)), child))
    return sorted(found)


def _discard(folder: Path) -> None:
    """Delete a checkpoint folder; it is renamed to a temporary name first so a kill mid-delete leaves no partial checkpoint."""
    aside = Path(tempfile.mkdtemp(prefix=f"{_TEMP_PREFIX}old-", dir=folder.parent))
    os.replace(folder, aside / folder.name)
    shutil.rmtree(aside, ignore_errors=True)


def _remove_temporaries(root: Path) -> None:
    for child in root.iterdir():
        if child.name.startswith(_TEMP_PREFIX):
            shutil.rmtree(child, ignore_errors=True)


def remove_leftovers(run_dir: str | Path) -> None:
    """Delete what a killed save or prune left in a run's checkpoint folder (half-written or half-deleted copies).

    A save clears them before it writes, but a run killed while pruning after its last save has no save left to
    do: its resume clears them here.
    """
    root = Path(run_dir) / CHECKPOINTS
    if root.is_dir():
        _remove_temporaries(root)


def _write_manifest(folder: Path, iteration: int) -> None:
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        files[rel] = {"size": path.stat().st_size, "sha256": file_sha256(path)}
    write_json(folder / MANIFEST, {"format": 1, "iteration": int(iteration), "files": files})


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    for path in [folder, *(p for p in folder.rglob("*") if p.is_dir())]:
        _fsync_dir(path)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # platforms without directory handles (Windows): the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_policy_weights(policy: LabelPolicy, folder: str | Path) -> None:
    """Load adapter (and value-head) weights written by `LabelPolicy.save` into `policy`'s adapter in place."""
    load_adapter_weights(policy.model, policy.adapter, folder, policy.device)
    if policy.value_head is not None:
        policy.load_value_head(folder)


def load_adapter_weights(model, adapter: str | None, folder: str | Path, device=None) -> None:
    """Load the LoRA weights of a PEFT adapter folder into `model`'s adapter `adapter`, in place."""
    from peft import set_peft_model_state_dict
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from reflectrl.models.loading import ADAPTER_WEIGHTS, unreadable_weights

    folder = Path(folder)
    weights = folder / ADAPTER_WEIGHTS
    if not weights.is_file():
        raise FileNotFoundError(f"no adapter weights in {folder}")
    device = device if device is not None else model.get_output_embeddings().weight.device
    try:
        state = load_file(str(weights), device=str(device))
    except SafetensorError as err:
        raise unreadable_weights(weights, err) from err
    result = set_peft_model_state_dict(model, state, adapter_name=adapter)
    unexpected = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
    if unexpected:
        raise ValueError(f"adapter weights in {folder} do not fit adapter {adapter!r}: {unexpected[:3]}")
