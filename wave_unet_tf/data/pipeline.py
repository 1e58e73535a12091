"""The tf.data datasets: random training excerpts (infinite) and tiled whole songs for validation (finite).

Both yield ``(mix [batch, input_frames, channels], {source: [batch, output_frames, channels]})`` float32 with
``input_frames, output_frames = io_sizes(config, output_frames)``; each target is the centre crop of its
source, and ``mix`` is always the sum of the (uncropped, augmented) sources.

Tracks are decoded once into the cache (`wave_unet_tf.data.cache`); a batch is read from it with ``pread`` and
assembled (gains, channel swap, sum, crop) with numpy in a ``tf.numpy_function``, several batches at once
(both release the GIL). On 2 CPU cores this is 2-3 times faster than the same arithmetic as TensorFlow ops,
which allocate and pass over the whole batch once per op. Memory stays at about ``(parallel calls +
prefetch) x batch``, whatever the size of the dataset.

``tf.numpy_function`` needs the input pipeline in the training process: true for one machine, for
``MirroredStrategy``, multi-worker and Cloud TPU VMs; not for a remote tf.data service.
"""

import os
from typing import Optional, Sequence, Union

import numpy as np
import tensorflow as tf

from wave_unet_tf.config import Config
from wave_unet_tf.sizes import io_sizes
from wave_unet_tf.data import cache
from wave_unet_tf.data.excerpts import ExcerptSampler, assemble, read_windows, validation_tiles
from wave_unet_tf.data.tracks import Track

AUTOTUNE = tf.data.AUTOTUNE
TrackList = Sequence[Union[Track, cache.CachedTrack]]
# Batches assembled at once: every core helps up to about 4, after which memory bandwidth is the limit.
DEFAULT_PARALLEL_CALLS = max(1, min(4, os.cpu_count() or 1))


def training_dataset(config: Config, tracks: TrackList, cache_dir: str, seed: int,
                     batch_size: Optional[int] = None, channel_swap: bool = False, remix: bool = False,
                     skip_batches: int = 0, output_frames: Optional[int] = None, strict: bool = False,
                     num_parallel_calls: int = DEFAULT_PARALLEL_CALLS,
                     prefetch_batches: int = 2) -> tf.data.Dataset:
  """An endless, shuffled stream of random excerpts for training.

  Every example picks a track (uniformly) and a position (uniformly over the whole track; windows that reach
  past an end read zeros there, as the original pads by the context). With ``config.augmentation`` each
  source is scaled by U(``amplify_min``, ``amplify_max``) and the mix re-summed, as the original.

  The stream is a pure function of ``seed``: batch ``i`` depends only on ``(seed, i)``, whatever the
  parallelism. To resume a run deterministically either pass ``skip_batches`` = batches already consumed
  (the stream goes on exactly where it stopped), or derive a fresh ``seed`` from the step (a different but
  equally deterministic continuation).

  Args:
    config: Rate, channels, sources, frame sizes, batch size and augmentation.
    tracks: `Track`s from `find_tracks` (decoded and cached on first use) or `CachedTrack`s.
    cache_dir: Where decoded tracks are cached.
    seed: Seeds the stream.
    batch_size: Examples per batch; default ``config.batch_size``.
    channel_swap: Swap left and right with probability 1/2: per example, or per source with ``remix``.
    remix: Draw every source of an example from its own random track and position (as Demucs and Open-Unmix
      train); the mix is the sum of those.
    skip_batches: Start at this batch of the stream.
    output_frames: Requested output frames; default ``config.num_frames``.
    strict: Raise on an unreadable track instead of skipping it with a warning.
    num_parallel_calls: Batches assembled at once (default: CPU cores, at most 4).
    prefetch_batches: Ready batches kept ahead of the consumer. Memory is about
      ``(num_parallel_calls + prefetch_batches) x`` one batch (mix, targets and int16 reads), not the dataset.

  Returns:
    Infinite ``tf.data.Dataset`` of ``(mix [batch, input_frames, channels], {source: [batch, output_frames,
    channels]})`` float32.
  """
  cached = _cached(config, tracks, cache_dir, strict)
  batch_size = config.batch_size if batch_size is None else int(batch_size)
  input_frames, output_frames = io_sizes(config, output_frames)
  gain_range = (config.amplify_min, config.amplify_max) if config.augmentation else None
  sampler = ExcerptSampler([t.frames for t in cached], config.num_sources, input_frames, output_frames, seed,
                           gain_range=gain_range, remix=remix,
                           channel_swap=channel_swap and config.num_channels == 2)
  scales = np.array([t.scale for t in cached], np.float32)

  def load_batch(index):
    plan = sampler.plan(int(index), batch_size)
    raw = read_windows(cached, plan.track_ids, plan.starts, input_frames)
    swaps = plan.swaps if sampler.channel_swap else None
    mix, targets = assemble(raw, plan.gains * scales[plan.track_ids], swaps, output_frames)
    return [mix, *targets]

  def make_batch(index):
    arrays = tf.numpy_function(load_batch, [index], [tf.float32] * (1 + config.num_sources), stateful=False)
    return _structure(config, arrays, batch_size, input_frames, output_frames)

  dataset = tf.data.Dataset.counter(start=int(skip_batches))
  dataset = dataset.map(make_batch, num_parallel_calls=num_parallel_calls, deterministic=True)
  return dataset.prefetch(prefetch_batches).with_options(_options())


def validation_dataset(config: Config, tracks: TrackList, cache_dir: str, batch_size: Optional[int] = None,
                       output_frames: Optional[int] = None, strict: bool = False,
                       num_parallel_calls: int = DEFAULT_PARALLEL_CALLS,
                       prefetch_batches: int = 2) -> tf.data.Dataset:
  """Whole songs tiled into consecutive excerpts, in order (hop = output frames), for validation and test.

  The first tile's input starts the context before the song, the last tile's output runs past its end;
  both read zeros there, as the original pads. No augmentation. The final batch may be smaller.

  Returns:
    Finite ``tf.data.Dataset`` of ``(mix [batch, input_frames, channels], {source: [batch, output_frames,
    channels]})`` float32; ``sum(ceil(frames / output_frames))`` examples over the tracks, in track order.
  """
  cached = _cached(config, tracks, cache_dir, strict)
  batch_size = config.batch_size if batch_size is None else int(batch_size)
  input_frames, output_frames = io_sizes(config, output_frames)
  track_ids, starts = validation_tiles([t.frames for t in cached], input_frames, output_frames)
  scales = np.array([t.scale for t in cached], np.float32)
  num_sources = config.num_sources

  def load_batch(ids, first_frames):
    ids = np.repeat(ids[:, None], num_sources, axis=1)
    first_frames = np.repeat(first_frames[:, None], num_sources, axis=1)
    raw = read_windows(cached, ids, first_frames, input_frames)
    mix, targets = assemble(raw, scales[ids], None, output_frames)
    return [mix, *targets]

  def make_batch(ids, first_frames):
    arrays = tf.numpy_function(load_batch, [ids, first_frames], [tf.float32] * (1 + num_sources),
                               stateful=False)
    return _structure(config, arrays, None, input_frames, output_frames)

  dataset = tf.data.Dataset.from_tensor_slices((track_ids, starts)).batch(batch_size)
  dataset = dataset.map(make_batch, num_parallel_calls=num_parallel_calls, deterministic=True)
  return dataset.prefetch(prefetch_batches).with_options(_options())


def _cached(config, tracks, cache_dir, strict):
  if not tracks:
    raise ValueError("no tracks given to the input pipeline")
  if all(isinstance(t, cache.CachedTrack) for t in tracks):
    return list(tracks)
  return cache.cache_tracks(config, tracks, cache_dir, strict=strict)


def _structure(config, arrays, batch_size, input_frames, output_frames):
  """``[mix, *targets]`` from numpy -> ``(mix, {source: target})`` with static shapes."""
  channels = config.num_channels
  mix = tf.ensure_shape(arrays[0], [batch_size, input_frames, channels])
  targets = {name: tf.ensure_shape(target, [batch_size, output_frames, channels])
             for name, target in zip(config.source_names, arrays[1:])}
  return mix, targets


def _options():
  options = tf.data.Options()
  options.deterministic = True
  options.experimental_optimization.map_parallelization = True
  return options
