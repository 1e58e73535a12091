"""Where a model can come from: every source a user may name with ``--model``, ``load_model`` or `Separator`."""

import os

from wave_unet_tf import catalogue
from wave_unet_tf.model.saving import NotAModelError, load_keras_model

BEST_MODEL = "best.keras"  # in a training --model_dir
URL_SCHEMES = ("http://", "https://")
HF_SCHEME = "hf://"


def _is_tf1_checkpoint(path: str) -> bool:
  """A TF1 checkpoint prefix (``<path>.index`` beside it) or a folder holding one (the original's layout)."""
  if os.path.exists(path + ".index"):
    return True
  return os.path.isdir(path) and any(f.endswith(".index") for f in os.listdir(path))


def load_model(path: str):
  """Loads a model from any of its sources.

  - a name of the catalogue (`wave_unet_tf.catalogue`): ``M5-HighSR``, ``M4``, ``M6`` or the original's names
    ``full_44KHz``, ``baseline_stereo``, ``full_multi_instrument``: the original project's released
    checkpoints, fetched once into the cache (``$WAVE_UNET_MODEL_REPO`` replaces their URL) and converted once
    (`wave_unet_tf.pretrained`); names come first (``./M4`` is a folder of that name);
  - a ``.keras`` file, or a training ``--model_dir`` (its ``best.keras``): a `WaveUNet`;
  - a SavedModel folder or a ``.tflite`` file: their forward passes (which `wave_unet_tf.Separator` runs);
  - an original TF1 checkpoint (prefix or folder, as in the original's released ``checkpoints/full_44KHz/``):
    its preset recognised from the variables, converted once and cached by content (`model_cache`);
  - an ``http(s)://`` URL of a ``.keras`` or ``.tflite`` file, downloaded once into the cache, verified
    when it ends in ``#sha256=<hex>``;
  - ``hf://<owner>/<repo>``: through Keras' own loader.
  """
  path = os.fspath(path)
  if catalogue.is_name(path):
    from wave_unet_tf import pretrained
    return pretrained.load(path)
  if path.startswith(HF_SCHEME):
    return load_keras_model(path)
  if path.startswith(URL_SCHEMES):
    from wave_unet_tf.model_cache import download
    cached = download(path)
    try:
      return load_model(cached)
    except ValueError as e:  # not a model after all (an error page, another file): not kept either
      os.remove(cached)
      raise NotAModelError(f"{path}: downloaded, but {e}") from None
  if os.path.isdir(path):
    if os.path.exists(os.path.join(path, BEST_MODEL)):
      return load_model(os.path.join(path, BEST_MODEL))
    if os.path.exists(os.path.join(path, "saved_model.pb")):
      from wave_unet_tf.deploy.saved_model import SavedModelForwardPass
      return SavedModelForwardPass(path)
  if _is_tf1_checkpoint(path):
    from wave_unet_tf.model_cache import load_tf1_checkpoint
    return load_tf1_checkpoint(path)
  if not os.path.exists(path):
    raise NotAModelError(f"{path}: no such file or folder")
  if os.path.isdir(path):
    raise NotAModelError(f"{path}: folder holds neither {BEST_MODEL} (a training run), saved_model.pb nor a TF1 "
                         f"checkpoint (*.index)")
  if path.endswith(".tflite"):
    from wave_unet_tf.deploy.tflite import TFLiteForwardPass
    return TFLiteForwardPass(path)
  if not path.endswith(".keras"):
    raise NotAModelError(f"{path}: not a model (expected a .keras file, a .tflite file, a SavedModel folder, "
                         f"a training --model_dir, a TF1 checkpoint, an http(s):// URL, hf:// or a pretrained "
                         f"model's name: {', '.join(catalogue.NAMES)})")
  return load_keras_model(path)
