"""Cutting a whole song into forward passes so that the frames tile its output exactly (pure numpy).

Why this works: a Wave-U-Net halves the time resolution ``num_layers`` times by keeping every second frame,
so it is shift-equivariant only for shifts by multiples of ``G = 2**num_layers``. Frames that start on that
grid (relative to the padded song) compute exactly the samples that one forward pass over the whole padded
song would, and the frames' kept outputs tile the song without overlap or seams.

- Context models (valid convolutions, M3 onwards): output sample ``j`` sees the input around ``j`` only, so
  the song is padded by the context with zeros, as the original, and frames advance by a multiple of ``G``.
  The output of a frame exceeds its stride by ``output_frames % G`` samples (5 for the paper's models),
  which are dropped.
- Same-padding models (M1, M2): every layer zero-pads each frame's edges, which would leave a seam. Each
  frame therefore carries a margin of ``M`` input samples on both sides (``M`` at least the receptive
  radius, on the grid) whose outputs are discarded. The song is padded by ``M`` zeros at both ends, so the
  result equals one forward pass over the padded song, whatever the frame size.

Frame sizes are always measured in model samples (the model's rate).
"""

import dataclasses
import math
from typing import Iterator, Optional, Tuple

import numpy as np

from wave_unet_tf.config import Config, context_frames, sizes_for_bottleneck


# Frame lengths come in eighths of the requested one: a run over many songs meets few frame shapes (each
# new shape is traced and, with XLA, compiled once), and frames are at most an eighth longer than an even
# split of the song would need.
FRAME_STEPS = 8


def grid(config: Config) -> int:
  """Frames must start on multiples of this: ``2**num_layers`` samples."""
  return 2 ** config.num_layers


def same_padding_margin(config: Config) -> int:
  """Input samples discarded on each side of a same-padding model's frame: the receptive radius (that of
  the same network with valid convolutions) rounded up to the grid, plus one grid step of safety."""
  g = grid(config)
  radius = context_frames(config.replace(context=True)) // 2 + 1
  return g * math.ceil(radius / g) + g


def model_context(config: Config) -> Tuple[int, int]:
  """``(before, after)``: input samples a frame needs before its first and after its last output sample."""
  if config.context:
    total = context_frames(config)
    return total // 2, total - total // 2  # the model centre-crops the mix with the odd sample at the end
  margin = same_padding_margin(config)
  return margin, margin


def valid_output_frames(config: Config, output_frames: int) -> Tuple[int, int]:
  """``(input_frames, output_frames)`` of the smallest valid frame whose stride covers ``output_frames``.

  The stride (kept outputs per frame) is ``output_frames`` rounded up to the grid.
  """
  g = grid(config)
  stride = g * max(1, math.ceil(output_frames / g))
  if config.context:
    # Output length grows by exactly g per bottleneck sample; find the first bottleneck that covers stride.
    _, smallest = sizes_for_bottleneck(config, 2)
    bottleneck = 2 + max(0, math.ceil((stride - smallest) / g))
    return sizes_for_bottleneck(config, bottleneck)
  before, after = model_context(config)
  return stride + before + after, stride + before + after


@dataclasses.dataclass(frozen=True)
class FramePlan:
  """Where each forward pass reads the song and where its output goes.

  Frame ``k`` reads song samples ``[input_start(k), input_start(k) + input_frames)`` (samples outside the
  song are zeros) and its output samples ``[keep_offset, keep_offset + stride)`` are song samples
  ``[k * stride, (k + 1) * stride)`` (the last frame's are cut at the song's end).

  Attributes:
    song_frames: Samples in the song (model rate).
    input_frames: Input samples per forward pass.
    output_frames: Output samples per forward pass.
    stride: Song samples each frame contributes; a multiple of the grid.
    context_before: Input samples before the first kept output sample of a frame.
    keep_offset: Index of the first kept sample within a frame's output (``M`` for same padding, else 0).
    num_frames: Forward passes needed.
  """

  song_frames: int
  input_frames: int
  output_frames: int
  stride: int
  context_before: int
  keep_offset: int
  num_frames: int

  def input_start(self, k: int) -> int:
    return k * self.stride - self.context_before

  def kept_frames(self, k: int) -> int:
    return min(self.stride, self.song_frames - k * self.stride)

  def gather(self, waveform: np.ndarray, frames: range, batch_size: Optional[int] = None) -> np.ndarray:
    """Inputs of ``frames`` as ``[batch, input_frames, channels]`` from ``waveform`` ``[song_frames,
    channels]``, zeros outside the song; padded with silent frames up to ``batch_size`` so the shape of
    every batch (and so the traced graph) stays the same."""
    batch = np.zeros((batch_size or len(frames), self.input_frames, waveform.shape[1]), np.float32)
    for row, k in enumerate(frames):
      start = self.input_start(k)
      lo, hi = max(start, 0), min(start + self.input_frames, self.song_frames)
      if hi > lo:
        batch[row, lo - start:hi - start] = waveform[lo:hi]
    return batch

  def scatter(self, outputs: np.ndarray, frames: range, destination: np.ndarray) -> None:
    """Writes the kept part of ``outputs`` ``[batch, output_frames, channels]`` into ``destination``
    ``[song_frames, channels]``."""
    for row, k in enumerate(frames):
      kept = self.kept_frames(k)
      destination[k * self.stride:k * self.stride + kept] = outputs[row, self.keep_offset:self.keep_offset + kept]

  def batches(self, batch_size: int) -> Iterator[range]:
    """Frame indices, ``batch_size`` at a time (the last batch may be shorter)."""
    for first in range(0, self.num_frames, batch_size):
      yield range(first, min(first + batch_size, self.num_frames))


def plan_frames(config: Config, song_frames: int, output_frames: int = None, input_frames: int = None) -> FramePlan:
  """Plans the forward passes over a song of ``song_frames`` model samples.

  Args:
    config: the model's config.
    song_frames: length of the song at the model's rate (positive).
    output_frames: the most output samples per forward pass; songs are split evenly into frames of at
      most this (see `frame_length`), rounded up to a valid frame, so short clips cost little.
    input_frames: a fixed input length instead (a model exported with fixed frames, e.g. TFLite); must be a
      valid input length.

  Returns:
    A `FramePlan`.
  """
  if song_frames < 1:
    raise ValueError(f"song_frames={song_frames}: a song needs at least one sample")
  before, after = model_context(config)
  g = grid(config)
  if input_frames is not None:
    input_frames, frame_output = int(input_frames), _output_for_input(config, int(input_frames))
  else:
    if output_frames is None or output_frames < 1:
      raise ValueError(f"output_frames={output_frames}: must be a positive number of samples")
    input_frames, frame_output = valid_output_frames(config, frame_length(int(output_frames), song_frames))
  if config.context:
    keep_offset = 0
    stride = (frame_output // g) * g
  else:
    keep_offset = before
    stride = frame_output - before - after
  if stride < g:
    raise ValueError(f"a frame of {input_frames} input samples is too short for this model (it keeps no "
                     f"output); use at least {valid_output_frames(config, g)[0]}")
  return FramePlan(song_frames=int(song_frames), input_frames=input_frames, output_frames=frame_output,
                   stride=stride, context_before=before, keep_offset=keep_offset,
                   num_frames=math.ceil(song_frames / stride))


def frame_length(output_frames: int, song_frames: int) -> int:
  """Output samples per frame for a song: the song split evenly into as few frames of at most
  ``output_frames`` as cover it, rounded up to a multiple of ``output_frames / FRAME_STEPS``."""
  step = math.ceil(output_frames / FRAME_STEPS)
  frames = math.ceil(song_frames / output_frames)
  return min(output_frames, step * math.ceil(song_frames / frames / step))


def _output_for_input(config: Config, input_frames: int) -> int:
  """Output length of a fixed input length, checking that the model accepts it."""
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


def padded_song(config: Config, plan: FramePlan, waveform: np.ndarray) -> np.ndarray:
  """The whole song as the frames see it, ``[(num_frames - 1) * stride + input_frames, channels]``: zeros,
  the song, zeros. One forward pass over it gives the same samples as the frames (used by tests)."""
  length = (plan.num_frames - 1) * plan.stride + plan.input_frames
  padded = np.zeros((length, waveform.shape[1]), np.float32)
  padded[plan.context_before:plan.context_before + plan.song_frames] = waveform
  return padded
