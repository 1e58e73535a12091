"""The network's structure, written once: what each level of a Wave-U-Net holds and how wide it is.

The Keras model is built from it, and everything else that walks the network reads it instead of
re-deriving layer names or widths: the TF1 checkpoint's variable order (`wave_unet_tf.conversion`), the
polyphase inference graph and the streaming step (`wave_unet_tf.separation`).

Level ``l`` (0 is the finest, at the input rate) holds a down convolution whose output is the level's skip
features, a decimation, and on the way back the upsampling of the coarser features and the up convolution
that merges them with the cropped skip. The up path visits the levels coarsest first.
"""

import dataclasses
from typing import Tuple


@dataclasses.dataclass(frozen=True)
class Conv:
  """A convolution: its Keras layer name, kernel size, input features and filters."""

  layer: str
  kernel_size: int
  in_features: int
  filters: int


@dataclasses.dataclass(frozen=True)
class Level:
  """One resolution of the U.

  Attributes:
    index: 0 for the finest level (the input rate); level ``l`` runs at ``1 / 2**l`` of it.
    down_conv: its output is the level's skip connection.
    decimate: the layer that keeps every second frame of the skip features.
    upsample: the layer that doubles the rate of the coarser features on the way up (``interp_<i>``
      holds a learned weight per feature; ``upsample_<i>`` is linear).
    learned_upsampling: whether ``upsample`` has a weight (``interp``).
    crop_concat: the layer that concatenates ``[cropped skip, upsampled]``.
    up_conv: merges them; its output is the level's up-path features.
  """

  index: int
  down_conv: Conv
  decimate: str
  upsample: str
  learned_upsampling: bool
  crop_concat: str
  up_conv: Conv

  @property
  def upsampled_features(self) -> int:
    """Features of the upsampled coarser tensor (the up convolution's input beyond the skip's)."""
    return self.up_conv.in_features - self.down_conv.filters


@dataclasses.dataclass(frozen=True)
class Structure:
  """The whole network: ``levels`` finest first, the bottleneck, and the outputs.

  Attributes:
    levels: one `Level` per ``num_layers``, finest first.
    bottleneck: the convolution between the down and the up path.
    crop_concat_mix: concatenates ``[cropped input mix, finest up features]``.
    outputs: the ``SourceOutputs`` layer's name.
    output_convs: one convolution per estimated source (named ``<outputs>/<source>_conv``); with
      ``difference`` output the last source has none.
  """

  levels: Tuple[Level, ...]
  bottleneck: Conv
  crop_concat_mix: str
  outputs: str
  output_convs: Tuple[Conv, ...]

  @property
  def up_path(self) -> Tuple[Level, ...]:
    """The levels in the order the up path visits them: coarsest first."""
    return tuple(reversed(self.levels))


def filters(config, level: int) -> int:
  """Filters of level ``level``'s convolutions (``level == num_layers``: the bottleneck)."""
  return config.num_initial_filters * (level + 1)


def structure(config) -> Structure:
  """The `Structure` of ``config``'s network. Layer names are those of the Keras model (and of its saved
  files): the up block that merges level ``l``'s skip is number ``num_layers - 1 - l`` in up-path order."""
  depth = config.num_layers
  levels = []
  features = config.num_channels
  for level in range(depth):
    up = depth - 1 - level
    coarser = filters(config, level + 1)
    levels.append(Level(
        index=level,
        down_conv=Conv(f"down_conv_{level}", config.filter_size, features, filters(config, level)),
        decimate=f"decimate_{level}",
        upsample=f"interp_{up}" if config.upsampling == "learned" else f"upsample_{up}",
        learned_upsampling=config.upsampling == "learned",
        crop_concat=f"crop_concat_{up}",
        up_conv=Conv(f"up_conv_{up}", config.merge_filter_size, filters(config, level) + coarser,
                     filters(config, level))))
    features = filters(config, level)
  bottleneck = Conv("bottleneck_conv", config.filter_size, features, filters(config, depth))
  estimated = config.source_names[:-1] if config.output_type == "difference" else config.source_names
  output_in = config.num_channels + filters(config, 0)
  output_convs = tuple(Conv(f"outputs/{source}_conv", config.output_filter_size, output_in, config.num_channels)
                       for source in estimated)
  return Structure(levels=tuple(levels), bottleneck=bottleneck, crop_concat_mix="crop_concat_mix",
                   outputs="outputs", output_convs=output_convs)
