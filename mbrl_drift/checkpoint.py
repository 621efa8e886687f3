"""Atomic checkpoints of whole training states, and loading of trained runs.

A checkpoint is one ``.npz`` file holding every leaf of a (batched) :class:`TrainState`, keyed
by its pytree path, plus a JSON header (config, package version, progress). It is written to a
temporary file and moved into place with ``os.replace``, so a run killed at any moment leaves
either the previous checkpoint or the new one, never a torn file. Loading checks the stored
structure against the expected one and names the first mismatch.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

CHECKPOINT_NAME = "checkpoint.npz"
CONFIG_NAME = "config.json"
_HEADER_KEY = "__header__"
#: Layout version of the checkpoint files this code writes and reads (``header["format"]``).
#: Checkpoints written before the field existed have the same layout and count as format 1.
CHECKPOINT_FORMAT = 1
_KEY_SUFFIX = "::prng_key"


class CheckpointError(ValueError):
  """A checkpoint is missing, corrupted, or does not match the expected state."""


def _is_prng_key(leaf: Any) -> bool:
  return hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _flatten(tree: Any) -> dict[str, Any]:
  leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
  return {jax.tree_util.keystr(path): leaf for path, leaf in leaves}


def atomic_write_bytes(path: Path, data: bytes) -> None:
  """Writes ``data`` to ``path`` atomically (temporary file, fsync, ``os.replace``)."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  try:
    with os.fdopen(handle, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp_name, path)
  except BaseException:
    if os.path.exists(tmp_name):
      os.unlink(tmp_name)
    raise


def atomic_write_json(path: Path, data: Any) -> None:
  """Writes ``data`` as indented JSON to ``path`` atomically."""
  atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=True, default=str) + "\n").encode())


def save_checkpoint(path: Path, state: Any, header: dict[str, Any]) -> None:
  """Saves a pytree (e.g. a batched TrainState) and a JSON-able header atomically.

  Args:
    path: destination ``.npz`` file.
    state: pytree of arrays; typed PRNG keys are stored as their key data.
    header: metadata stored next to the arrays (config, version, progress); the layout
      version ``"format"`` is added.
  """
  arrays: dict[str, np.ndarray] = {}
  for name, leaf in _flatten(state).items():
    if _is_prng_key(leaf):
      arrays[name + _KEY_SUFFIX] = np.asarray(jax.random.key_data(leaf))
    else:
      arrays[name] = np.asarray(leaf)
  header = {**header, "format": CHECKPOINT_FORMAT}
  arrays[_HEADER_KEY] = np.frombuffer(json.dumps(header, default=str).encode(), dtype=np.uint8)
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  atomic_write_bytes(Path(path), buffer.getvalue())


def read_header(path: Path) -> dict[str, Any]:
  """The JSON header of a checkpoint, without loading its arrays."""
  with _open_npz(path) as data:
    return _header(data, path)


def _open_npz(path: Path):
  path = Path(path)
  if not path.exists():
    raise CheckpointError(f"no checkpoint at {path}")
  try:
    return np.load(path, allow_pickle=False)
  except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
    raise CheckpointError(f"checkpoint {path} is corrupted ({error})") from error


def _header(data: Any, path: Path) -> dict[str, Any]:
  try:
    header = json.loads(bytes(data[_HEADER_KEY]).decode())
  except (KeyError, ValueError, zipfile.BadZipFile, OSError, EOFError) as error:
    raise CheckpointError(f"checkpoint {path} is corrupted: unreadable header ({error})") from error
  stored_format = header.get("format", 1) if isinstance(header, dict) else None
  if stored_format != CHECKPOINT_FORMAT:
    raise CheckpointError(
        f"checkpoint {path} has format {stored_format!r} (written by mbrl_drift "
        f"{header.get('version', '?') if isinstance(header, dict) else '?'}); this mbrl_drift "
        f"reads format {CHECKPOINT_FORMAT}: retrain the run, or load it with the version that "
        f"wrote it")
  return header


def load_checkpoint(path: Path, template: Any) -> tuple[Any, dict[str, Any]]:
  """Loads a checkpoint into the structure of ``template``.

  Args:
    path: the ``.npz`` file.
    template: a pytree with the expected structure, shapes and dtypes (arrays or
      ``jax.ShapeDtypeStruct``, e.g. from ``jax.eval_shape``).

  Returns:
    ``(state, header)``.

  Raises:
    CheckpointError: the file is missing or corrupted, or its structure, shapes or dtypes do not
      match ``template`` (the message names the first mismatching leaf).
  """
  with _open_npz(path) as data:
    header = _header(data, path)
    stored = set(data.files) - {_HEADER_KEY}
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    restored = []
    expected_names = set()
    for key_path, leaf in leaves:
      name = jax.tree_util.keystr(key_path)
      is_key = _is_prng_key(leaf)
      stored_name = name + _KEY_SUFFIX if is_key else name
      expected_names.add(stored_name)
      if stored_name not in stored:
        raise CheckpointError(f"checkpoint {path} does not match this run: missing leaf {name}")
      try:
        array = data[stored_name]
      except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise CheckpointError(f"checkpoint {path} is corrupted at leaf {name} ({error})") from error
      if is_key:
        value = jax.random.wrap_key_data(jnp.asarray(array))
        if value.shape != leaf.shape:
          raise CheckpointError(f"checkpoint {path} does not match this run: leaf {name} has "
                                f"shape {value.shape}, expected {leaf.shape}")
      else:
        if array.shape != tuple(leaf.shape) or array.dtype != np.dtype(leaf.dtype):
          raise CheckpointError(
              f"checkpoint {path} does not match this run: leaf {name} has shape "
              f"{array.shape} and dtype {array.dtype}, expected {tuple(leaf.shape)} and "
              f"{np.dtype(leaf.dtype)}")
        value = jnp.asarray(array)
      restored.append(value)
    extra = stored - expected_names
    if extra:
      raise CheckpointError(f"checkpoint {path} does not match this run: unexpected leaves "
                            f"{sorted(extra)[:5]}")
  return jax.tree_util.tree_unflatten(treedef, restored), header
