"""Saving and reading ``.keras`` model files (written atomically)."""

import keras

from wave_unet_tf.files import atomic_output
from wave_unet_tf.model import layers, wave_unet  # noqa: F401  (registers the serializable classes)


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


def load_keras_model(path: str) -> wave_unet.WaveUNet:
  """The `WaveUNet` in a ``.keras`` file (or at an ``hf://`` address, through Keras' own loader);
  `NotAModelError` names the path otherwise."""
  try:
    model = keras.saving.load_model(path, compile=False)
  except Exception as e:  # zip, HDF5, config and hub errors all mean the same to the user
    raise NotAModelError(f"{path}: not a readable Keras model ({type(e).__name__}: {str(e)[:200]})") from None
  if not isinstance(model, wave_unet.WaveUNet):
    raise NotAModelError(f"{path}: a Keras model, but not a Wave-U-Net")
  return model
