"""The Keras backend the model runs on: the one package of `wave_unet_tf` that knows it.

``KERAS_BACKEND=tensorflow|jax|torch`` (Keras' own switch, read when Keras is first imported) selects it for
every command and for the Python API; TensorFlow is the default. The network, the recipe and the separation
are written once in ``keras.ops``; what must differ per backend lives in this package's modules: compiling a
forward pass or a streaming step (`inference`), devices (`devices`), one training step. What needs TensorFlow
whatever the backend (exports, the TFLite precisions' conversions) runs there from any backend
(`tensorflow_child`) or says so with `require_tensorflow`, never giving a different result.
"""

import json
import os

NAMES = ("tensorflow", "jax", "torch")
TITLES = {"tensorflow": "TensorFlow", "jax": "JAX", "torch": "PyTorch"}  # as messages name them
DEFAULT = "tensorflow"


class NeedsTensorFlowError(RuntimeError):
  """A feature that runs on TensorFlow only, asked for under another backend."""


def name() -> str:
  """The backend Keras runs (or will run, when it is not imported yet: the same rules as Keras')."""
  import sys
  if "keras" in sys.modules:
    import keras
    return keras.backend.backend()
  chosen = os.environ.get("KERAS_BACKEND")
  if chosen:
    return chosen
  config = os.path.join(os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras"),
                        "keras.json")
  try:
    with open(config) as f:
      return json.load(f).get("backend", DEFAULT)
  except (OSError, ValueError):
    return DEFAULT


def title() -> str:
  """The current backend's name as people write it (``TensorFlow``, ``JAX``, ``PyTorch``)."""
  return TITLES.get(name(), name())


def is_tensorflow() -> bool:
  return name() == "tensorflow"


def require_tensorflow(feature: str) -> None:
  """Raises `NeedsTensorFlowError` (one line naming ``feature``) unless Keras runs on TensorFlow."""
  current = name()
  if current != "tensorflow":
    raise NeedsTensorFlowError(f"{feature} runs on the TensorFlow backend only (KERAS_BACKEND={current} now): "
                               f"run it with KERAS_BACKEND=tensorflow")


_JAX_CACHE = "JAX_COMPILATION_CACHE_DIR"


def set_compile_cache(folder, keep_user_cache: bool = False) -> None:
  """JAX's persistent compile cache in ``folder``/jax (TensorFlow's XLA cache is ``folder`` itself,
  `wave_unet_tf.runtime`), for every program: Keras' JAX backend compiles one per initializer shape when it
  builds a model and one per operation it runs eagerly, seconds per model on a small CPU without the cache.
  Takes effect if JAX is not imported yet; ``keep_user_cache`` keeps a cache the user set."""
  import sys
  if "jax" in sys.modules or (keep_user_cache and _JAX_CACHE in os.environ):
    return
  if not folder:
    os.environ.pop(_JAX_CACHE, None)
    return
  os.environ[_JAX_CACHE] = os.path.join(os.path.abspath(os.path.expanduser(folder)), "jax")
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
