"""The Wave-U-Net as a Keras functional model, built from a `Config`."""

import keras

from wave_unet_tf.config import Config
from wave_unet_tf.model import layers, structure


def _conv(conv: structure.Conv, padding):
  # Keras' leaky_relu has the original's slope 0.2 by default: max(0.2 x, x).
  return keras.layers.Conv1D(conv.filters, conv.kernel_size, padding=padding, activation="leaky_relu",
                             name=conv.layer)


def _graph(config: Config):
  padding = config.padding
  network = structure.structure(config)
  mix = keras.Input(shape=(None, config.num_channels), name="mix")

  skips = {}
  x = mix
  for level in network.levels:
    x = skips[level.index] = _conv(level.down_conv, padding)(x)
    x = layers.Decimate(name=level.decimate)(x)
  x = _conv(network.bottleneck, padding)(x)

  for level in network.up_path:
    upsample = layers.LearnedUpsample if level.learned_upsampling else layers.LinearUpsample
    x = upsample(padding, name=level.upsample)(x)
    x = layers.CropConcat(name=level.crop_concat)([skips[level.index], x])
    x = _conv(level.up_conv, padding)(x)

  x = layers.CropConcat(name=network.crop_concat_mix)([mix, x])
  # float32 even under a mixed-precision policy: outputs and loss stay full precision.
  sources = layers.SourceOutputs(config.source_names, config.num_channels, config.output_type,
                                 config.output_activation, config.output_filter_size, padding,
                                 dtype="float32", name=network.outputs)([x, mix])
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

  Its layers are those of `structure` (``model.structure``), created in the original's variable order.
  """

  def __init__(self, config, name="wave_unet", **kwargs):
    if not isinstance(config, Config):
      config = Config.from_dict(config)
    mix, outputs = _graph(config)
    super().__init__(mix, outputs, name=name, **kwargs)
    self.wave_unet_config = config

  @property
  def structure(self) -> structure.Structure:
    """The network's levels, bottleneck and outputs, with the names of the layers that hold them."""
    return structure.structure(self.wave_unet_config)

  def get_config(self):
    return {"name": self.name, "config": self.wave_unet_config.to_dict()}

  @classmethod
  def from_config(cls, config, custom_objects=None):
    return cls(**config)


def build_model(config: Config, name: str = "wave_unet") -> WaveUNet:
  """The Wave-U-Net of ``config``, with freshly initialised weights (see `WaveUNet`)."""
  return WaveUNet(config, name=name)
