"""A run's checkpoint folders (``checkpoints/``, ``best/``) and ``best.keras``, made to survive faults.

Resuming reads the newest checkpoint that reads: a damaged one (truncated by a crash or a full disk, bit rot)
is named on one line and the one before is used, and dropped from the folder's bookkeeping so that later
saves keep the good one. Saving that fails (a full disk) stops the run with one line, after removing what the
failed save left, so the previous checkpoint stays the latest and the same command resumes once there is room.
"""

import glob
import os
import re
import shutil
import time

import tensorflow as tf
from tensorflow.python.checkpoint import checkpoint_management  # the state-file writer, without tf.compat.v1's notice

from wave_unet_tf import runtime
from wave_unet_tf.files import is_disk_full
from wave_unet_tf.model.saving import NotAModelError, load_keras_model, save_model

# Two at least: a damaged latest checkpoint leaves the one before to resume from.
MAX_TO_KEEP = 2
# What reading a truncated or corrupt checkpoint raises (``IndexError: Read less bytes than requested`` for a
# short .data file, DataLossError for a bad checksum, NotFoundError for a missing file, OpError for a bad index).
READ_ERRORS = (IndexError, ValueError, tf.errors.OpError)


class NoReadableCheckpointError(ValueError):
  """Every checkpoint of a folder is damaged."""


class SaveError(OSError):
  """A checkpoint or model could not be written (a full disk); the previous one is kept."""


class CheckpointFolder:
  """A `tf.train.CheckpointManager` whose restore falls back past damaged checkpoints and whose save fails
  with one line and no partial files."""

  def __init__(self, checkpoint: tf.train.Checkpoint, directory: str, max_to_keep: int = MAX_TO_KEEP):
    self.checkpoint = checkpoint
    self.directory = directory
    self.max_to_keep = max(max_to_keep, MAX_TO_KEEP)
    self._recover_lost_state()
    self.manager = self._open_manager()

  @property
  def latest(self):
    return self.manager.latest_checkpoint

  def restore(self, checkpoint: tf.train.Checkpoint = None):
    """Restores the newest readable checkpoint into ``checkpoint`` (default: the folder's own); returns its
    path, None for an empty folder. `NoReadableCheckpointError` names them all when none reads."""
    checkpoint = checkpoint or self.checkpoint
    damaged, listed = [], self._listed()
    for path in reversed(listed):
      try:
        checkpoint.restore(path).assert_existing_objects_matched()
      except READ_ERRORS as e:
        damaged.append((_damaged_file(path), _short(e)))
        continue
      # A damaged read may have assigned some variables already; this full restore overwrote every one.
      if damaged:
        self._forget(listed[listed.index(path) + 1:])
        runtime.notice(f"{_names(damaged)} damaged; resuming from {path} (step {_number(path)})")
      return path
    if damaged:
      raise NoReadableCheckpointError(f"no readable checkpoint in {self.directory}: {_names(damaged)} damaged; "
                                      f"delete the folder to start over")
    return None

  def save(self, number: int) -> str:
    """Saves as checkpoint ``number``; on failure removes its partial files and raises `SaveError`."""
    try:
      return self.manager.save(checkpoint_number=number)
    except (tf.errors.OpError, OSError) as e:
      target = f"{self.manager._checkpoint_prefix}-{number}"  # the name CheckpointManager gives it
      self._remove_partial(target)
      kept = f"{self.latest} (step {_number(self.latest)}) is kept" if self.latest else "nothing else changed"
      raise SaveError(f"cannot write checkpoint {target}: {_reason(e)}; {kept}") from None

  # -- bookkeeping --------------------------------------------------------------------------------------------

  def _listed(self):
    """Every checkpoint the state file names, oldest first (the manager's own list leaves out some)."""
    state = tf.train.get_checkpoint_state(self.directory)
    if state is None:
      return []
    paths = [os.path.join(self.directory, os.path.basename(p)) for p in state.all_model_checkpoint_paths]
    latest = os.path.join(self.directory, os.path.basename(state.model_checkpoint_path))
    return [p for p in paths if p != latest] + [latest]

  def _open_manager(self):
    return tf.train.CheckpointManager(self.checkpoint, self.directory, max_to_keep=self.max_to_keep)

  def _recover_lost_state(self):
    """Rewrites a lost or unreadable ``checkpoint`` state file from the checkpoints on disk; TensorFlow would
    otherwise start over and never delete them."""
    on_disk = sorted(glob.glob(os.path.join(glob.escape(self.directory), "ckpt-*.index")), key=_number)
    if on_disk and tf.train.get_checkpoint_state(self.directory) is None:
      names = [os.path.basename(p)[:-len(".index")] for p in on_disk][-self.max_to_keep:]
      now = time.time()
      _write_state(self.directory, names, [now] * len(names), now - 1)

  def _forget(self, paths):
    """Drops ``paths`` from the state file and deletes their files, so that saves from now on rotate out the
    good checkpoints, not the damaged ones."""
    names = {os.path.basename(p) for p in paths}
    state = tf.train.get_checkpoint_state(self.directory)
    listed = list(state.all_model_checkpoint_paths) if state else []
    stamps = list(state.all_model_checkpoint_timestamps) if state else []
    if len(stamps) != len(listed):  # a state file written without timestamps
      stamps = [time.time()] * len(listed)
    kept = [(os.path.basename(p), t) for p, t in zip(listed, stamps) if os.path.basename(p) not in names]
    if kept:  # relative names, as CheckpointManager writes them, so the folder can move
      _write_state(self.directory, [p for p, _ in kept], [t for _, t in kept], state.last_preserved_timestamp)
    else:
      _remove(os.path.join(self.directory, "checkpoint"))
    for name in names:
      _remove_files(os.path.join(self.directory, name))
    self.manager = self._open_manager()

  def _remove_partial(self, target):
    """Removes what a failed save of ``target`` left: its temporary folder and state file, and its own files
    (half merged, or an older checkpoint of the same number half overwritten)."""
    shutil.rmtree(f"{target}_temp", ignore_errors=True)
    _remove_files(target)
    try:
      if os.path.basename(target) in {os.path.basename(p) for p in self._listed()}:
        self._forget([target])
    except (tf.errors.OpError, OSError):
      pass  # no room even for the state file: resuming skips the missing checkpoint
    finally:
      for leftover in glob.glob(os.path.join(glob.escape(self.directory), "checkpoint.tmp*")):
        _remove(leftover)
    self.manager = self._open_manager()  # what is on disk now, not what the failed save recorded


def remove_leftovers(model_dir: str) -> None:
  """Removes what a killed run left mid-write in ``model_dir`` (a best.keras or config being written, a
  checkpoint's temporary folder or state file); call it only while holding the folder's lock."""
  patterns = [".tmp-*", os.path.join("checkpoints", "*_temp"), os.path.join("best", "*_temp"),
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
  except (OSError, tf.errors.OpError) as e:
    raise SaveError(f"cannot write {path}: {_reason(e)}; the previous {os.path.basename(path)} is kept") from None


def _write_state(directory, names, timestamps, last_preserved_timestamp):
  """The ``checkpoint`` state file, with names relative to ``directory`` as CheckpointManager writes them, and
  timestamps after ``last_preserved_timestamp`` so that the manager rotates them out in turn."""
  checkpoint_management.update_checkpoint_state_internal(
      directory, os.path.join(directory, names[-1]), [os.path.join(directory, n) for n in names],
      save_relative_paths=True, all_model_checkpoint_timestamps=timestamps,
      last_preserved_timestamp=last_preserved_timestamp)


def _damaged_file(prefix):
  """The file of checkpoint ``prefix`` that does not read: its index, else its data."""
  try:
    tf.train.load_checkpoint(prefix)
  except READ_ERRORS:
    return prefix + ".index"
  data = sorted(glob.glob(glob.escape(prefix) + ".data-*"))
  return data[0] if len(data) == 1 else prefix + ".data-*"


def _reason(error):
  if isinstance(error, tf.errors.ResourceExhaustedError) or is_disk_full(error):
    return "no space left on device (free some and run the same command to resume)"
  return _short(error)


def _short(error):
  text = " ".join(str(error).split())
  text = re.sub(r"^\{\{[^}]*\}\}\s*", "", text)  # TensorFlow's op context
  return f"{type(error).__name__}: {text[:160]}"


def _names(damaged):
  return "; ".join(f"{path} ({reason})" for path, reason in damaged) + (" is" if len(damaged) == 1 else " are")


def _number(path):
  match = re.search(r"-(\d+)(?:\.index)?$", path)
  return int(match.group(1)) if match else -1


def _remove_files(prefix):
  for path in glob.glob(glob.escape(prefix) + ".index") + glob.glob(glob.escape(prefix) + ".data-*"):
    _remove(path)


def _remove(path):
  try:
    os.remove(path)
  except FileNotFoundError:
    pass
