"""wave_unet_tf: Wave-U-Net (Stoller, Ewert, Dixon, ISMIR 2018) in TensorFlow 2 and Keras 3.

    import wave_unet_tf as wut
    config = wut.get_preset("M5-HighSR")
    model = wut.build_model(config)
"""

import importlib
import importlib.abc
import importlib.util
import sys

from wave_unet_tf import runtime
from wave_unet_tf.config import Config, get_preset, preset_names
from wave_unet_tf.sizes import io_sizes

# The commands' speed for Python users too: host allocator and compile cache, if TensorFlow is not running yet.
runtime.prepare_environment(keep_user_cache=True)

__version__ = "0.1.0"

# TensorFlow-heavy names load on first use, so `import wave_unet_tf` (and every `--help`) stays instant.
_LAZY = {
    "build_model": "wave_unet_tf.model.wave_unet",
    "load_model": "wave_unet_tf.model_sources",
    "convert_tf1_checkpoint": "wave_unet_tf.conversion.tf1_checkpoint",
    "Separator": "wave_unet_tf.separation.separator",
    "StreamingSeparator": "wave_unet_tf.separation.streaming",
}


def __getattr__(name):
  if name == "app":  # the web page (extra [app]): `wut.app.launch()`
    return importlib.import_module("wave_unet_tf.app")
  if name in _LAZY:
    return getattr(importlib.import_module(_LAZY[name]), name)
  raise AttributeError(f"module 'wave_unet_tf' has no attribute {name!r}")


_KERAS_OBJECTS = "wave_unet_tf.model.wave_unet"


class _RegisterWithKeras(importlib.abc.MetaPathFinder, importlib.abc.Loader):
  """`keras.models.load_model` needs this package's layers registered, but importing them imports Keras
  (seconds), which `import wave_unet_tf` should not cost. So they register the moment Keras is imported."""

  def find_spec(self, fullname, path, target=None):
    if fullname != "keras" or "keras" in sys.modules:
      return None
    # TensorFlow also asks for keras' spec without importing it, so stay installed until Keras executes.
    sys.meta_path.remove(self)
    try:
      spec = importlib.util.find_spec(fullname)
    finally:
      sys.meta_path.insert(0, self)
    if spec is None:
      return None
    self._keras_loader, spec.loader = spec.loader, self
    return spec

  def create_module(self, spec):
    return self._keras_loader.create_module(spec)

  def exec_module(self, module):
    if self in sys.meta_path:
      sys.meta_path.remove(self)
    with runtime.native_logs_filtered():  # TensorFlow's start-up lines, when Keras runs on it
      self._keras_loader.exec_module(module)
    importlib.import_module(_KERAS_OBJECTS)


if "keras" in sys.modules:
  importlib.import_module(_KERAS_OBJECTS)
else:
  sys.meta_path.insert(0, _RegisterWithKeras())


__all__ = ["Config", "get_preset", "io_sizes", "preset_names", "runtime", *_LAZY]
