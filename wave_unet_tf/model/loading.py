"""Saving and loading models: ``.keras`` files and training run folders (written atomically)."""

import os

import keras

from wave_unet_tf.files import atomic_output

from wave_unet_tf.model import layers, wave_unet  # noqa: F401  (registers the serializable classes)

BEST_MODEL = "best.keras"


class NotAModelError(ValueError):
  """A path that holds no model this project can load."""


def save_model(model: keras.Model, path: str) -> str:
  """Saves ``model`` as a ``.keras`` file at ``path`` via a temporary file and a rename, so a crash or a full
  disk never leaves a half-written model in its place."""
  if not path.endswith(".keras"):
    raise ValueError(f"{path}: a model file name must end in .keras")
  with atomic_output(path, suffix=".keras") as tmp:
    model.save(tmp)
  return path


def load_model(path: str):
  """Loads a model: a ``.keras`` file, a training ``--model_dir`` (its ``best.keras``), a SavedModel folder or
  a ``.tflite`` file.

  ``.keras`` files and run folders give a `WaveUNet`; SavedModel and TFLite give their exported runners,
  which `wave_unet_tf.Separator` accepts too.
  """
  path = os.fspath(path)
  if not os.path.exists(path):
    raise NotAModelError(f"{path}: no such file or folder")
  if os.path.isdir(path):
    if os.path.exists(os.path.join(path, BEST_MODEL)):
      return load_model(os.path.join(path, BEST_MODEL))
    if os.path.exists(os.path.join(path, "saved_model.pb")):
      from wave_unet_tf.deploy.saved_model import load_saved_model
      return load_saved_model(path)
    raise NotAModelError(f"{path}: folder holds neither {BEST_MODEL} (a training run) nor saved_model.pb")
  if path.endswith(".tflite"):
    from wave_unet_tf.deploy.tflite import TFLiteModel
    return TFLiteModel(path)
  if not path.endswith(".keras"):
    raise NotAModelError(f"{path}: not a model (expected a .keras file, a .tflite file, a SavedModel folder "
                         f"or a training --model_dir)")
  try:
    model = keras.models.load_model(path, compile=False)
  except Exception as e:  # zip, HDF5 and config errors all mean the same to the user
    raise NotAModelError(f"{path}: not a readable Keras model ({type(e).__name__}: {str(e)[:200]})") from None
  if not isinstance(model, wave_unet.WaveUNet):
    raise NotAModelError(f"{path}: a Keras model, but not a Wave-U-Net")
  return model
