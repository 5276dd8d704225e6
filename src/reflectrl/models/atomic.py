"""Atomic writes for model caches and adapter checkpoints: see `reflectrl.storage`.

The helpers live in `reflectrl.storage`, which imports no torch, so that code
outside `reflectrl.models` can write files atomically without importing this
package (whose ``__init__`` loads torch and transformers). They are re-exported
here for the model modules.
"""

from reflectrl.storage import atomic_files, atomic_folder, atomic_write_bytes, recover_folder

__all__ = ["atomic_files", "atomic_folder", "atomic_write_bytes", "recover_folder"]
