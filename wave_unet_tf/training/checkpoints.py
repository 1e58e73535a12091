"""A run's checkpoint folders (``checkpoints/``, ``best/``) and ``best.keras``, made to survive faults.

A checkpoint is one file, ``ckpt-<step>.npz``: the model's weights, the optimizer's variables and the run's
counters as plain arrays and JSON, the same whatever Keras backend wrote it, so a run started on TensorFlow
resumes on JAX or PyTorch and back. Each file is written under a temporary name and renamed into place, so a
checkpoint is either whole or absent; the zip format's CRC-32 of every array finds a truncated or bit-rotten
one. The newest `MAX_TO_KEEP` are kept.

Resuming reads the newest checkpoint that reads: a damaged one is named on one line, removed, and the one
before is used. Saving that fails (a full disk) stops the run with one line, after removing what the failed
save left, so the previous checkpoint stays the latest and the same command resumes once there is room.
"""

import glob
import json
import os
import re
import shutil
import zipfile

import numpy as np

from wave_unet_tf import runtime
from wave_unet_tf.files import atomic_output, is_disk_full
from wave_unet_tf.model.saving import NotAModelError, load_keras_model, save_model

FORMAT = 1
SUFFIX = ".npz"
# Two at least: a damaged latest checkpoint leaves the one before to resume from.
MAX_TO_KEEP = 2
# What reading a truncated or corrupt checkpoint raises (BadZipFile for a short file or a bad CRC-32).
READ_ERRORS = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile)
_INFO = "__checkpoint__"
_NAME = re.compile(r"^ckpt-(\d+)" + re.escape(SUFFIX) + "$")


class NoReadableCheckpointError(ValueError):
  """Every checkpoint of a folder is damaged."""


class CheckpointMismatchError(ValueError):
  """A checkpoint that reads but holds another model's or optimizer's variables."""


class SaveError(OSError):
  """A checkpoint or model could not be written (a full disk); the previous one is kept."""


class CheckpointFolder:
  """Numbered checkpoint files in ``directory``: `save` writes one and rotates out the oldest, `restore`
  reads the newest that reads."""

  def __init__(self, directory: str, max_to_keep: int = MAX_TO_KEEP):
    self.directory = directory
    self.max_to_keep = max(max_to_keep, MAX_TO_KEEP)

  @property
  def latest(self):
    listed = self.listed()
    return listed[-1] if listed else None

  def listed(self):
    """The checkpoint files on disk, oldest first."""
    try:
      names = os.listdir(self.directory)
    except FileNotFoundError:
      return []
    return [os.path.join(self.directory, n) for n in sorted((n for n in names if _NAME.match(n)), key=number)]

  def restore(self, apply):
    """Reads the newest readable checkpoint and passes ``(path, arrays, info)`` to ``apply``; returns its path, None
    for an empty folder. Damaged ones newer than it are named on one line and removed; when none reads,
    `NoReadableCheckpointError` names them all and nothing is removed."""
    damaged, listed = [], self.listed()
    for path in reversed(listed):
      try:
        arrays, info = read(path)
      except READ_ERRORS as e:
        damaged.append((path, _short(e)))
        continue
      apply(path, arrays, info)
      if damaged:
        for bad, _ in damaged:
          _remove(bad)
        runtime.notice(f"{_names(damaged)} damaged; resuming from {path} (step {number(path)})")
      return path
    if damaged:
      raise NoReadableCheckpointError(f"no readable checkpoint in {self.directory}: {_names(damaged)} damaged; "
                                      f"delete the folder to start over")
    return None

  def save(self, step: int, arrays: dict, info: dict) -> str:
    """Writes ``arrays`` and ``info`` as checkpoint ``step`` (replacing one of that number); on failure
    removes its partial file and raises `SaveError` with the previous checkpoint kept."""
    path = os.path.join(self.directory, f"ckpt-{step}{SUFFIX}")
    try:
      os.makedirs(self.directory, exist_ok=True)
      write(path, arrays, info)
    except OSError as e:
      latest = self.latest
      kept = f"{latest} (step {number(latest)}) is kept" if latest else "nothing else changed"
      raise SaveError(f"cannot write checkpoint {path}: {_reason(e)}; {kept}") from None
    for old in self.listed()[:-self.max_to_keep]:
      _remove(old)
    return path


def write(path: str, arrays: dict, info: dict) -> None:
  """One checkpoint file, atomically (a temporary file in the same folder, synced, then renamed)."""
  record = dict(info, format=FORMAT)
  payload = {_INFO: np.frombuffer(json.dumps(record).encode(), np.uint8), **arrays}
  with atomic_output(path, suffix=SUFFIX) as tmp:
    with open(tmp, "wb") as f:
      np.savez(f, **payload)


def read(path: str):
  """``(arrays, info)`` of a checkpoint file, every byte read and checked (CRC-32 per array)."""
  with open(path, "rb") as file, np.load(file, allow_pickle=False) as f:  # numpy leaves a file open when it fails
    arrays = {key: f[key] for key in f.files}
  info = json.loads(arrays.pop(_INFO).tobytes().decode())
  if info.get("format") != FORMAT:
    raise ValueError(f"checkpoint format {info.get('format')!r}, expected {FORMAT}")
  return arrays, info


# -- what a checkpoint holds ------------------------------------------------------------------------------------


def snapshot(model, optimizer=None, counters=None):
  """``(arrays, info)`` of the model's weights, the optimizer's variables and ``counters`` (plain numbers),
  in the variables' order; names go along for the error messages."""
  import keras
  arrays, info = {}, {"counters": dict(counters or {})}
  groups = [("model", model.weights)] + ([("optimizer", optimizer.variables)] if optimizer is not None else [])
  for group, variables in groups:
    for index, variable in enumerate(variables):
      arrays[f"{group}/{index:05d}"] = np.asarray(keras.ops.convert_to_numpy(variable))
    info[group] = [variable.path for variable in variables]
  from wave_unet_tf import backends
  info["backend"] = backends.name()
  return arrays, info


def assign(path, arrays, info, model, optimizer=None) -> dict:
  """Assigns a `snapshot`'s arrays to ``model`` (and ``optimizer``); returns its counters.
  `CheckpointMismatchError` (one line naming ``path``) when the variables do not match."""
  groups = [("model", model.weights)] + ([("optimizer", optimizer.variables)] if optimizer is not None else [])
  for group, variables in groups:
    names = info.get(group)
    if names is None or len(names) != len(variables):
      raise CheckpointMismatchError(f"{path}: holds {len(names or [])} {group} variables, this run has "
                                    f"{len(variables)}; it is a checkpoint of another model or run")
    for index, variable in enumerate(variables):
      value = arrays[f"{group}/{index:05d}"]
      if tuple(value.shape) != tuple(variable.shape):
        raise CheckpointMismatchError(f"{path}: {names[index]} has shape {tuple(value.shape)}, this run's "
                                      f"{variable.path} {tuple(variable.shape)}")
  for group, variables in groups:
    for index, variable in enumerate(variables):
      variable.assign(arrays[f"{group}/{index:05d}"].astype(variable.dtype))
  return info.get("counters", {})


# -- best.keras and leftovers -------------------------------------------------------------------------------------


def remove_leftovers(model_dir: str) -> None:
  """Removes what a killed run left mid-write in ``model_dir`` (a best.keras, config or checkpoint being
  written); call it only while holding the folder's lock."""
  patterns = [".tmp-*", os.path.join("checkpoints", ".tmp-*"), os.path.join("best", ".tmp-*"),
              # what TensorFlow's checkpoints of earlier versions leave mid-write
              os.path.join("checkpoints", "*_temp"), os.path.join("best", "*_temp"),
              os.path.join("checkpoints", "checkpoint.tmp*"), os.path.join("best", "checkpoint.tmp*")]
  for pattern in patterns:
    for path in glob.glob(os.path.join(glob.escape(model_dir), pattern)):
      if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
      else:
        _remove(path)


def check_best_model(path: str, rebuild) -> None:
  """Rebuilds the ``best.keras`` at ``path`` when it does not load; ``rebuild()`` returns ``(model, source)``."""
  if not os.path.exists(path):
    return
  try:
    load_keras_model(path)
  except NotAModelError:
    model, source = rebuild()
    save_best_model(model, path)
    runtime.notice(f"{path} is damaged (it does not load as a Keras model); rebuilt from {source}")


def save_best_model(model, path: str) -> None:
  """`save_model` (atomic: a temporary file in the same folder, then a rename), failing with `SaveError`."""
  try:
    save_model(model, path)
  except Exception as e:  # noqa: BLE001  (h5py and TensorFlow's file system wrap OSError in their own types)
    if not (isinstance(e, OSError) or is_disk_full(e, os.path.dirname(os.path.abspath(path)))):
      raise
    raise SaveError(f"cannot write {path}: {_reason(e)}; the previous {os.path.basename(path)} is kept") from None


def number(path) -> int:
  match = re.search(r"ckpt-(\d+)", os.path.basename(path or ""))
  return int(match.group(1)) if match else -1


def _reason(error):
  if is_disk_full(error):
    return "no space left on device (free some and run the same command to resume)"
  return _short(error)


def _short(error):
  text = " ".join(str(error).split())
  return f"{type(error).__name__}: {text[:160]}"


def _names(damaged):
  return "; ".join(f"{path} ({reason})" for path, reason in damaged) + (" is" if len(damaged) == 1 else " are")


def _remove(path):
  try:
    os.remove(path)
  except FileNotFoundError:
    pass
