"""The Wave-U-Net as a Keras functional model, built from a `Config`."""

import keras

from wave_unet_tf.config import Config
from wave_unet_tf.model import layers


def _conv(filters, kernel_size, padding, name):
  # Keras' leaky_relu has the original's slope 0.2 by default: max(0.2 x, x).
  return keras.layers.Conv1D(filters, kernel_size, padding=padding, activation="leaky_relu", name=name)


def _graph(config: Config):
  padding = config.padding
  filters = lambda level: config.num_initial_filters * (level + 1)
  mix = keras.Input(shape=(None, config.num_channels), name="mix")

  skips = []
  x = mix
  for i in range(config.num_layers):
    x = _conv(filters(i), config.filter_size, padding, f"down_conv_{i}")(x)
    skips.append(x)
    x = layers.Decimate(name=f"decimate_{i}")(x)
  x = _conv(filters(config.num_layers), config.filter_size, padding, "bottleneck_conv")(x)

  for i in range(config.num_layers):
    if config.upsampling == "learned":
      x = layers.LearnedUpsample(padding, name=f"interp_{i}")(x)
    else:
      x = layers.LinearUpsample(padding, name=f"upsample_{i}")(x)
    x = layers.CropConcat(name=f"crop_concat_{i}")([skips[-i - 1], x])
    x = _conv(filters(config.num_layers - i - 1), config.merge_filter_size, padding, f"up_conv_{i}")(x)

  x = layers.CropConcat(name="crop_concat_mix")([mix, x])
  # float32 even under a mixed-precision policy: outputs and loss stay full precision.
  sources = layers.SourceOutputs(config.source_names, config.num_channels, config.output_type,
                                 config.output_activation, config.output_filter_size, padding,
                                 dtype="float32", name="outputs")([x, mix])
  outputs = {source: keras.layers.Identity(name=source, dtype="float32")(tensor)
             for source, tensor in zip(config.source_names, sources)}
  return mix, outputs


@keras.saving.register_keras_serializable(package=layers.PACKAGE)
class WaveUNet(keras.Model):
  """The Wave-U-Net of a `Config`; the config travels with the model (``.keras`` files included).

  Input ``mix``: ``[batch, frames, num_channels]``, frames free. Output: a dict ``{source:
  [batch, output_frames, num_channels]}``; `wave_unet_tf.io_sizes` gives matching frame counts. Call with
  ``training=False`` for inference (the clipping of ``linear`` and ``difference`` outputs), ``training=True``
  for the training graph.

  Layers are named so that their creation order is the original's variable order: ``down_conv_<i>``,
  ``bottleneck_conv``, then per up level ``interp_<i>`` (learned upsampling) and ``up_conv_<i>``, then the
  output convolutions ``<source>_conv`` inside ``outputs``.
  """

  def __init__(self, config, name="wave_unet", **kwargs):
    if not isinstance(config, Config):
      config = Config.from_dict(config)
    mix, outputs = _graph(config)
    super().__init__(mix, outputs, name=name, **kwargs)
    self.wave_unet_config = config

  def get_config(self):
    return {"name": self.name, "config": self.wave_unet_config.to_dict()}

  @classmethod
  def from_config(cls, config, custom_objects=None):
    return cls(**config)


def build_model(config: Config, name: str = "wave_unet") -> WaveUNet:
  """The Wave-U-Net of ``config``, with freshly initialised weights (see `WaveUNet`)."""
  return WaveUNet(config, name=name)
