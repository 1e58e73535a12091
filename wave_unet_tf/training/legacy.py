"""Run folders of earlier versions, whose checkpoints are TensorFlow's (``ckpt-<n>.index`` and ``.data-*``
files named by a ``checkpoint`` state file): TensorFlow reads them once, and the run goes on in the
checkpoint format of every backend (`checkpoints`). Other backends refuse them in one line."""

import glob
import os

from wave_unet_tf import backends

COUNTERS = ("step", "epoch", "stage", "stage_start_epoch", "worse_epochs", "best_loss")


class LegacyCheckpointError(ValueError):
  """A TensorFlow checkpoint of an earlier version, under another backend."""


def has_checkpoint(directory: str) -> bool:
  return bool(glob.glob(os.path.join(glob.escape(os.fspath(directory)), "ckpt-*.index")))


def restore(directory: str, model, optimizer, with_counters=True):
  """Restores the newest TensorFlow checkpoint of ``directory`` into ``model`` and ``optimizer``; returns
  ``(path, counters)``, or ``(None, {})`` when there is none."""
  if not has_checkpoint(directory):
    return None, {}
  if not backends.is_tensorflow():
    raise LegacyCheckpointError(
        f"{directory} holds TensorFlow checkpoints of an earlier version of wave-unet-tf; resume the run once "
        f"with KERAS_BACKEND=tensorflow (it then saves checkpoints every backend reads), or start a new "
        f"--model_dir")
  import numpy as np
  import tensorflow as tf
  path = tf.train.latest_checkpoint(directory)
  if path is None:
    return None, {}
  values = {name: tf.Variable(np.inf if name == "best_loss" else 0, dtype=tf.float64 if name == "best_loss"
                              else tf.int64, trainable=False) for name in COUNTERS}
  objects = dict(model=model, optimizer=optimizer, **(values if with_counters else {}))
  tf.train.Checkpoint(**objects).restore(path).expect_partial()
  counters = {name: (float(v.numpy()) if name == "best_loss" else int(v.numpy())) for name, v in values.items()}
  return path, counters if with_counters else {}
