"""Where a model can come from: every path a user may name with ``--model``, ``load_model`` or `Separator`."""

import os

from wave_unet_tf.model.saving import NotAModelError, load_keras_model

BEST_MODEL = "best.keras"  # in a training --model_dir


def load_model(path: str):
  """Loads a model: a ``.keras`` file, a training ``--model_dir`` (its ``best.keras``), a SavedModel folder or
  a ``.tflite`` file.

  ``.keras`` files and run folders give a `WaveUNet`; SavedModel and TFLite give their forward passes,
  which `wave_unet_tf.Separator` accepts too.
  """
  path = os.fspath(path)
  if not os.path.exists(path):
    raise NotAModelError(f"{path}: no such file or folder")
  if os.path.isdir(path):
    if os.path.exists(os.path.join(path, BEST_MODEL)):
      return load_model(os.path.join(path, BEST_MODEL))
    if os.path.exists(os.path.join(path, "saved_model.pb")):
      from wave_unet_tf.deploy.saved_model import SavedModelForwardPass
      return SavedModelForwardPass(path)
    raise NotAModelError(f"{path}: folder holds neither {BEST_MODEL} (a training run) nor saved_model.pb")
  if path.endswith(".tflite"):
    from wave_unet_tf.deploy.tflite import TFLiteForwardPass
    return TFLiteForwardPass(path)
  if not path.endswith(".keras"):
    raise NotAModelError(f"{path}: not a model (expected a .keras file, a .tflite file, a SavedModel folder "
                         f"or a training --model_dir)")
  return load_keras_model(path)
