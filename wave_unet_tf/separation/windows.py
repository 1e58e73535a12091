"""Cutting a whole song into windows (one forward pass each) that tile its output exactly (pure numpy).

A window is the stretch of song one forward pass reads; a frame is one sample instant (lengths are counted
in frames at the model's rate). Windows start on the model's shift grid (`wave_unet_tf.sizes.grid`), so
they compute exactly the samples that one forward pass over the whole padded song would, and their kept
outputs tile the song without overlap or seams.

- Context models (valid convolutions, M3 onwards): output sample ``j`` sees the input around ``j`` only, so
  the song is padded by the context with zeros, as the original, and windows advance by a multiple of the
  grid. A window's output exceeds its stride by ``output_frames % grid`` samples (5 for the paper's
  models), which are dropped.
- Same-padding models (M1, M2): every layer zero-pads each window's edges, which would leave a seam. Each
  window therefore carries a margin of ``M`` input samples on both sides (``M`` at least the receptive
  radius, on the grid) whose outputs are discarded. The song is padded by ``M`` zeros at both ends, so the
  result equals one forward pass over the padded song, whatever the window size.
"""

import dataclasses
import math
from typing import Iterator, Optional

import numpy as np

from wave_unet_tf.config import Config
from wave_unet_tf.sizes import grid, model_context, output_for_input, valid_output_frames


# Window lengths come in eighths of the requested one: a run over many songs meets few window shapes (each
# new shape is traced and, with XLA, compiled once), and windows are at most an eighth longer than an even
# split of the song would need.
WINDOW_STEPS = 8


@dataclasses.dataclass(frozen=True)
class WindowPlan:
  """Where each forward pass reads the song and where its output goes.

  Window ``k`` reads song samples ``[input_start(k), input_start(k) + input_frames)`` (samples outside the
  song are zeros) and its output samples ``[keep_offset, keep_offset + stride)`` are song samples
  ``[k * stride, (k + 1) * stride)`` (the last window's are cut at the song's end).

  Attributes:
    song_frames: Samples in the song (model rate).
    input_frames: Input samples per forward pass.
    output_frames: Output samples per forward pass.
    stride: Song samples each window contributes; a multiple of the grid.
    context_before: Input samples before the first kept output sample of a window.
    keep_offset: Index of the first kept sample within a window's output (``M`` for same padding, else 0).
    num_windows: Forward passes needed.
  """

  song_frames: int
  input_frames: int
  output_frames: int
  stride: int
  context_before: int
  keep_offset: int
  num_windows: int

  def input_start(self, k: int) -> int:
    return k * self.stride - self.context_before

  def kept_frames(self, k: int) -> int:
    return min(self.stride, self.song_frames - k * self.stride)

  def gather(self, waveform: np.ndarray, windows: range, batch_size: Optional[int] = None) -> np.ndarray:
    """Inputs of ``windows`` as ``[batch, input_frames, channels]`` from ``waveform`` ``[song_frames,
    channels]``, zeros outside the song; padded with silent windows up to ``batch_size`` so the shape of
    every batch (and so the traced graph) stays the same."""
    batch = np.zeros((batch_size or len(windows), self.input_frames, waveform.shape[1]), np.float32)
    for row, k in enumerate(windows):
      start = self.input_start(k)
      lo, hi = max(start, 0), min(start + self.input_frames, self.song_frames)
      if hi > lo:
        batch[row, lo - start:hi - start] = waveform[lo:hi]
    return batch

  def scatter(self, outputs: np.ndarray, windows: range, destination: np.ndarray) -> None:
    """Writes the kept part of ``outputs`` ``[batch, output_frames, channels]`` into ``destination``
    ``[song_frames, channels]``."""
    for row, k in enumerate(windows):
      kept = self.kept_frames(k)
      destination[k * self.stride:k * self.stride + kept] = outputs[row, self.keep_offset:self.keep_offset + kept]

  def batches(self, batch_size: int) -> Iterator[range]:
    """Window indices, ``batch_size`` at a time (the last batch may be shorter)."""
    for first in range(0, self.num_windows, batch_size):
      yield range(first, min(first + batch_size, self.num_windows))


def plan_windows(config: Config, song_frames: int, output_frames: int = None, input_frames: int = None) -> WindowPlan:
  """Plans the forward passes over a song of ``song_frames`` model samples.

  Args:
    config: the model's config.
    song_frames: length of the song at the model's rate (positive).
    output_frames: the most output samples per forward pass; songs are split evenly into windows of at
      most this (see `window_length`), rounded up to a valid window, so short clips cost little.
    input_frames: a fixed input length instead (a model exported with fixed windows, e.g. TFLite); must be a
      valid input length.

  Returns:
    A `WindowPlan`.
  """
  if song_frames < 1:
    raise ValueError(f"song_frames={song_frames}: a song needs at least one sample")
  before, after = model_context(config)
  g = grid(config)
  if input_frames is not None:
    input_frames, window_output = int(input_frames), output_for_input(config, int(input_frames))
  else:
    if output_frames is None or output_frames < 1:
      raise ValueError(f"output_frames={output_frames}: must be a positive number of samples")
    input_frames, window_output = valid_output_frames(config, window_length(int(output_frames), song_frames))
  if config.context:
    keep_offset = 0
    stride = (window_output // g) * g
  else:
    keep_offset = before
    stride = window_output - before - after
  if stride < g:
    raise ValueError(f"a window of {input_frames} input samples is too short for this model (it keeps no "
                     f"output); use at least {valid_output_frames(config, g)[0]}")
  return WindowPlan(song_frames=int(song_frames), input_frames=input_frames, output_frames=window_output,
                   stride=stride, context_before=before, keep_offset=keep_offset,
                   num_windows=math.ceil(song_frames / stride))


def window_length(output_frames: int, song_frames: int) -> int:
  """Output samples per window for a song: the song split evenly into as few windows of at most
  ``output_frames`` as cover it, rounded up to a multiple of ``output_frames / WINDOW_STEPS``."""
  step = math.ceil(output_frames / WINDOW_STEPS)
  windows = math.ceil(song_frames / output_frames)
  return min(output_frames, step * math.ceil(song_frames / windows / step))


def padded_song(config: Config, plan: WindowPlan, waveform: np.ndarray) -> np.ndarray:
  """The whole song as the windows see it, ``[(num_windows - 1) * stride + input_frames, channels]``: zeros,
  the song, zeros. One forward pass over it gives the same samples as the windows (used by tests)."""
  length = (plan.num_windows - 1) * plan.stride + plan.input_frames
  padded = np.zeros((length, waveform.shape[1]), np.float32)
  padded[plan.context_before:plan.context_before + plan.song_frames] = waveform
  return padded
