"""wave_unet_tf: Wave-U-Net (Stoller, Ewert, Dixon, ISMIR 2018) in TensorFlow 2 and Keras 3.

    import wave_unet_tf as wut
    config = wut.get_preset("M5-HighSR")
    model = wut.build_model(config)
"""

from wave_unet_tf.config import Config, get_preset, io_sizes, preset_names

__version__ = "0.1.0"

# TensorFlow-heavy names load on first use, so `import wave_unet_tf` (and every `--help`) stays instant.
_LAZY = {
    "build_model": "wave_unet_tf.model.wave_unet",
    "load_model": "wave_unet_tf.model.loading",
    "convert_tf1_checkpoint": "wave_unet_tf.conversion.tf1_checkpoint",
    "Separator": "wave_unet_tf.separation.separator",
}


def __getattr__(name):
  if name in _LAZY:
    import importlib
    return getattr(importlib.import_module(_LAZY[name]), name)
  raise AttributeError(f"module 'wave_unet_tf' has no attribute {name!r}")


__all__ = ["Config", "get_preset", "io_sizes", "preset_names", *_LAZY]
