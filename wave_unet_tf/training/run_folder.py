"""A training run's folder: its config, checkpoints, logs and best model, and the guard against mixing runs.

    <model_dir>/config.json         the full resolved config
    <model_dir>/checkpoints/        latest training state (model, optimizer, counters) as ckpt-<step>.npz, for
                                    resuming on any Keras backend (checkpoints.py)
    <model_dir>/best/               the best validation checkpoint, where the fine-tuning stage starts
    <model_dir>/best.keras          the best model, for separation and export
    <model_dir>/logs/{train,valid}  TensorBoard
    <model_dir>/train.lock          held while a process trains here (lock.py)
"""

import os

from wave_unet_tf.config import Config
from wave_unet_tf.files import write_text_atomically

CONFIG_FILE = "config.json"


class RunFolderError(ValueError):
  """A --model_dir that holds something else than this run."""


def prepare(model_dir: str, config: Config, write: bool = True) -> None:
  """Creates ``model_dir`` and writes ``config.json``, or checks that an existing run has the same config."""
  path = os.path.join(model_dir, CONFIG_FILE)
  if os.path.exists(path):
    try:
      previous = Config.from_json_file(path)
    except ValueError as e:
      raise RunFolderError(f"--model_dir={model_dir}: {e}") from None
    if previous != config:
      changed = [f"{k}: {v!r} -> {config.to_dict()[k]!r}" for k, v in previous.to_dict().items()
                 if config.to_dict()[k] != v]
      raise RunFolderError(f"--model_dir={model_dir} holds a run of a different config ({'; '.join(changed)}); "
                           f"use a new --model_dir, or the same flags to resume")
    return
  if not write:
    return
  try:
    os.makedirs(model_dir, exist_ok=True)
  except OSError as e:
    raise RunFolderError(f"--model_dir={model_dir}: cannot create it ({e.strerror})") from None
  write_text_atomically(path, config.to_json() + "\n")
