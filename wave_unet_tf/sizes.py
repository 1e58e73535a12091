"""Size arithmetic of a Wave-U-Net (pure Python): input and output lengths, context, the shift grid and
the valid window lengths. Config validation, the data pipeline, separation and streaming all use these.

Every function takes a `wave_unet_tf.Config` (or anything with its fields). Lengths are in samples at the
model's rate.

Why the grid: the network halves its time resolution ``num_layers`` times by keeping every second sample,
so it is shift-equivariant only for shifts by multiples of ``2**num_layers``. With valid convolutions
(``context``), input and output lengths grow by exactly that much per bottleneck sample, so the context
(input minus output) is constant.
"""

import math
from typing import Tuple


def grid(config) -> int:
  """Windows must start on multiples of this: ``2**num_layers`` samples."""
  return 2 ** config.num_layers


def bottleneck_frames(config, output_frames: int) -> int:
  """Smallest bottleneck length whose output covers ``output_frames`` (the original's ``get_padding``)."""
  rem = float(output_frames) - config.output_filter_size + 1
  for _ in range(config.num_layers):
    rem = (rem + config.merge_filter_size - 1 + 1.0) / 2.0
  return int(math.ceil(rem))


def sizes_for_bottleneck(config, bottleneck: int, first_filter_size: int = None) -> Tuple[int, int]:
  """``(input_frames, output_frames)`` of a context model whose bottleneck has ``bottleneck`` samples.

  Both grow by ``2**num_layers`` per bottleneck sample, so ``input - output`` (the context) is constant.
  ``first_filter_size`` is the first convolution's kernel: the model's ``filter_size`` by default; the
  original's size computation assumed ``input_filter_size`` there.
  """
  first_filter_size = config.filter_size if first_filter_size is None else first_filter_size
  input_frames = output_frames = bottleneck
  input_frames += config.filter_size - 1
  for i in range(config.num_layers):
    output_frames = 2 * output_frames - 1 - config.merge_filter_size + 1
    kernel = first_filter_size if i == config.num_layers - 1 else config.filter_size
    input_frames = 2 * input_frames - 1 + kernel - 1
  output_frames -= config.output_filter_size - 1
  return input_frames, output_frames


def io_sizes(config, output_frames: int = None) -> Tuple[int, int]:
  """``(input_frames, output_frames)`` for a requested output length, as the original's ``get_padding``.

  With context the request is rounded up to the next size the valid convolutions allow; without context
  input and output are equal.

  >>> io_sizes(get_preset("M5-HighSR"), 16384)
  (147443, 16389)
  """
  output_frames = config.num_frames if output_frames is None else int(output_frames)
  if output_frames < 1:
    raise ValueError(f"output_frames={output_frames}: must be positive")
  if not config.context:
    return output_frames, output_frames
  bottleneck = bottleneck_frames(config, output_frames)
  if bottleneck < 2:
    raise ValueError(f"output_frames={output_frames}: too small for {config.num_layers} layers")
  return sizes_for_bottleneck(config, bottleneck, first_filter_size=config.input_filter_size)


def context_frames(config) -> int:
  """Input samples beyond the output, split evenly before and after it (0 without context)."""
  if not config.context:
    return 0
  input_frames, output_frames = sizes_for_bottleneck(config, 2)
  return input_frames - output_frames


def same_padding_margin(config) -> int:
  """Input samples discarded on each side of a same-padding model's window: the receptive radius (that of
  the same network with valid convolutions) rounded up to the grid, plus one grid step of safety."""
  g = grid(config)
  radius = context_frames(config.replace(context=True)) // 2 + 1
  return g * math.ceil(radius / g) + g


def model_context(config) -> Tuple[int, int]:
  """``(before, after)``: input samples a window needs before its first and after its last output sample
  (for same padding: the margin whose outputs are discarded)."""
  if config.context:
    total = context_frames(config)
    return total // 2, total - total // 2  # the model centre-crops the mix with the odd sample at the end
  margin = same_padding_margin(config)
  return margin, margin


def valid_output_frames(config, output_frames: int) -> Tuple[int, int]:
  """``(input_frames, output_frames)`` of the smallest valid window that keeps at least ``output_frames``
  samples, that number rounded up to the grid (its stride)."""
  g = grid(config)
  stride = g * max(1, math.ceil(output_frames / g))
  if config.context:
    # Output length grows by exactly g per bottleneck sample; find the first bottleneck that covers stride.
    _, smallest = sizes_for_bottleneck(config, 2)
    bottleneck = 2 + max(0, math.ceil((stride - smallest) / g))
    return sizes_for_bottleneck(config, bottleneck)
  before, after = model_context(config)
  return stride + before + after, stride + before + after


def output_for_input(config, input_frames: int) -> int:
  """Output length of a window of ``input_frames``, checking that the model accepts that length."""
  g = grid(config)
  if not config.context:
    if input_frames % g:
      raise ValueError(f"input_frames={input_frames}: a model without context needs a multiple of {g}")
    return input_frames
  smallest_input, smallest_output = sizes_for_bottleneck(config, 2)
  if input_frames < smallest_input or (input_frames - smallest_input) % g:
    raise ValueError(f"input_frames={input_frames}: not a valid input length for this model "
                     f"({smallest_input} + a multiple of {g})")
  return smallest_output + (input_frames - smallest_input)


def activation_bytes_per_second(config) -> int:
  """Bytes of float32 feature maps a forward pass writes per second of output, summed over every layer (down
  convolutions and their decimations, upsampled, concatenated and up-convolved features at each level): what a
  whole-song window holds on a device at most, compilers reusing buffers bring it down."""
  from wave_unet_tf.model.structure import structure
  network = structure(config)
  values = 0.0
  for level in network.levels:
    rate = config.sample_rate / 2 ** level.index
    values += rate * level.down_conv.filters * 1.5  # the convolution's output and its decimation
    values += rate * (level.upsampled_features * 2 + level.down_conv.filters + level.up_conv.filters)
  values += config.sample_rate / 2 ** config.num_layers * network.bottleneck.filters
  values += config.sample_rate * config.num_channels * (len(config.source_names) + 1)
  return int(4 * values)
