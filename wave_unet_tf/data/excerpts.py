"""Where excerpts come from (a pure function of seed and batch index) and reading them from the cache.

Kept free of TensorFlow so the tests can rebuild every batch with numpy.
"""

import dataclasses
import os
from typing import Optional, Sequence, Tuple

import numpy as np

from wave_unet_tf.data.cache import CachedTrack


@dataclasses.dataclass(frozen=True)
class ExcerptPlan:
  """What one batch reads.

  Attributes:
    track_ids: int64 ``[batch, sources]``, index into the track list; equal along ``sources`` unless remixing.
    starts: int64 ``[batch, sources]``, first input frame; windows reaching past either end of the track
      read zeros there (the original pads tracks by the context on both sides).
    gains: float32 ``[batch, sources]``, the augmentation gain of each source (1 without augmentation).
    swaps: bool ``[batch, sources]``, swap the stereo channels of that source.
  """

  track_ids: np.ndarray
  starts: np.ndarray
  gains: np.ndarray
  swaps: np.ndarray


class ExcerptSampler:
  """Random training excerpts: batch ``i`` of seed ``s`` depends on ``(s, i)`` only.

  So any batch can be made on its own: in parallel, in order, and from any point of the stream (resuming).
  Each example picks a track uniformly (every song weighs the same, as the original's equal number of
  snippets per track), then an output window uniformly among all positions inside the track; the input
  window is the output window widened by the context on both sides.
  """

  def __init__(self, track_frames: Sequence[int], num_sources: int, input_frames: int, output_frames: int,
               seed: int, gain_range: Optional[Tuple[float, float]] = None, remix: bool = False,
               channel_swap: bool = False):
    self.track_frames = np.asarray(track_frames, np.int64)
    if self.track_frames.size == 0:
      raise ValueError("no tracks to sample excerpts from")
    self.num_sources = num_sources
    self.output_frames = output_frames
    self.pad_before = (input_frames - output_frames) // 2
    self.seed = int(seed)
    self.gain_range = gain_range
    self.remix = remix
    self.channel_swap = channel_swap

  def plan(self, batch_index: int, batch_size: int) -> ExcerptPlan:
    rng = np.random.default_rng([abs(self.seed), int(self.seed < 0), int(batch_index)])
    # Without remixing all sources of an example share one draw, so they come from the same song and time.
    draws = self.num_sources if self.remix else 1
    shape = (batch_size, draws)
    track_ids = rng.integers(len(self.track_frames), size=shape)
    last_start = np.maximum(self.track_frames[track_ids] - self.output_frames, 0)
    output_starts = np.minimum((rng.random(shape) * (last_start + 1)).astype(np.int64), last_start)
    full = (batch_size, self.num_sources)
    if self.gain_range is None:
      gains = np.ones(full, np.float32)
    else:
      gains = rng.uniform(self.gain_range[0], self.gain_range[1], size=full).astype(np.float32)
    swaps = rng.random(shape) < 0.5 if self.channel_swap else np.zeros(shape, bool)
    return ExcerptPlan(np.broadcast_to(track_ids, full).copy(),
                       np.broadcast_to(output_starts - self.pad_before, full).copy(), gains,
                       np.broadcast_to(swaps, full).copy())


def validation_tiles(track_frames: Sequence[int], input_frames: int, output_frames: int):
  """Every song cut into consecutive output windows (hop = output frames), as the original's test tiling.

  Returns:
    ``(track_ids, starts)``, int64 ``[tiles]``: the input windows, starting the context before each output
    window; the last output window of a song runs past its end and reads zeros there.
  """
  pad_before = (input_frames - output_frames) // 2
  track_ids, starts = [], []
  for i, frames in enumerate(track_frames):
    count = -(-int(frames) // output_frames)
    track_ids.append(np.full(count, i, np.int64))
    starts.append(np.arange(count, dtype=np.int64) * output_frames - pad_before)
  if not track_ids:
    return np.zeros(0, np.int64), np.zeros(0, np.int64)
  return np.concatenate(track_ids), np.concatenate(starts)


def read_windows(tracks: Sequence[CachedTrack], track_ids: np.ndarray, starts: np.ndarray,
                 frames: int) -> np.ndarray:
  """Reads int16 ``[batch, sources, frames, channels]``: source ``s`` of ``tracks[track_ids[b, s]]`` from
  frame ``starts[b, s]``, zeros outside the track.

  Reads with ``pread`` rather than through a memory map: it releases the GIL (parallel map calls overlap),
  and the pages it touches stay in the kernel's page cache instead of this process' resident memory, so
  memory does not grow with the size of the dataset.
  """
  batch, num_sources = track_ids.shape
  channels = tracks[0].channels
  out = np.empty((batch, num_sources, frames, channels), np.int16)
  frame_bytes = channels * 2
  descriptors = {}
  try:
    for b in range(batch):
      for s in range(num_sources):
        track = tracks[int(track_ids[b, s])]
        start = int(starts[b, s])
        lo, hi = max(start, 0), min(start + frames, track.frames)
        window = out[b, s]
        if hi <= lo:
          window[:] = 0
          continue
        window[:lo - start] = 0
        window[hi - start:] = 0
        fd = descriptors.get(track.path)
        if fd is None:
          fd = descriptors[track.path] = os.open(track.path, os.O_RDONLY)
        offset = track.data_offset + (s * track.frames + lo) * frame_bytes
        _pread_into(fd, memoryview(window[lo - start:hi - start]).cast("B"), offset, track.path)
  finally:
    for fd in descriptors.values():
      os.close(fd)
  return out


def assemble(raw: np.ndarray, factors: np.ndarray, swaps: Optional[np.ndarray], output_frames: int):
  """Turns int16 windows into an example batch: scale, optionally swap channels, sum, centre-crop.

  Args:
    raw: int16 ``[batch, sources, input_frames, channels]`` from `read_windows`.
    factors: float32 ``[batch, sources]``, cache scale times augmentation gain.
    swaps: bool ``[batch, sources]`` or None: reverse the channels of those sources.
    output_frames: Target length, cut from the middle (an odd surplus frame is cut from the end).

  Returns:
    ``(mix, targets)``: float32 ``[batch, input_frames, channels]``, the sum of the scaled sources, and a list
    of float32 ``[batch, output_frames, channels]``, one per source, each exactly the centre of the scaled
    source that entered the sum.
  """
  batch, num_sources, input_frames, channels = raw.shape
  if swaps is not None:
    for b, s in zip(*np.nonzero(swaps)):
      raw[b, s] = raw[b, s, :, ::-1].copy()
  crop = (input_frames - output_frames) // 2
  mix = np.empty((batch, input_frames, channels), np.float32)
  targets = [np.empty((batch, output_frames, channels), np.float32) for _ in range(num_sources)]
  # Example by example, so every operand is contiguous; numpy releases the GIL for each of these.
  for b in range(batch):
    for s in range(num_sources):
      factor = np.float32(factors[b, s])
      if s == 0:
        np.multiply(raw[b, 0], factor, out=mix[b], casting="unsafe")
      else:
        mix[b] += np.multiply(raw[b, s], factor, dtype=np.float32)
      np.multiply(raw[b, s, crop:crop + output_frames], factor, out=targets[s][b], casting="unsafe")
  return mix, targets


def _pread_into(fd, buffer, offset, path):
  done = 0
  while done < len(buffer):
    count = os.preadv(fd, [buffer[done:]], offset + done)
    if count <= 0:
      raise OSError(f"{path}: cache file is shorter than its header says; delete it to rebuild")
    done += count
