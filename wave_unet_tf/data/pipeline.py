"""The tf.data datasets: random training excerpts (infinite) and tiled whole songs for validation (finite).

Both yield ``(mix [batch, input_frames, channels], {source: [batch, output_frames, channels]})`` float32 with
``input_frames, output_frames = io_sizes(config, output_frames)``; each target is the centre crop of its
source, and ``mix`` is always the sum of the (uncropped, augmented) sources.

Tracks are decoded once into the cache (`wave_unet_tf.data.cache`); a batch is read from it with ``pread`` in
a ``tf.numpy_function`` and assembled (gains, channel swap, sum, crop) with TensorFlow ops, several batches
at once. Memory stays at about ``(parallel calls + prefetch) x batch``, whatever the size of the dataset.
"""

from typing import Optional, Sequence, Union

import numpy as np
import tensorflow as tf

from wave_unet_tf.config import Config, io_sizes
from wave_unet_tf.data import cache
from wave_unet_tf.data.excerpts import ExcerptSampler, read_windows, validation_tiles
from wave_unet_tf.data.tracks import Track

AUTOTUNE = tf.data.AUTOTUNE
TrackList = Sequence[Union[Track, cache.CachedTrack]]


def training_dataset(config: Config, tracks: TrackList, cache_dir: str, seed: int,
                     batch_size: Optional[int] = None, channel_swap: bool = False, remix: bool = False,
                     skip_batches: int = 0, output_frames: Optional[int] = None, strict: bool = False,
                     num_parallel_calls: int = 2, prefetch_batches: int = 2) -> tf.data.Dataset:
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
    num_parallel_calls: Batches assembled at once.
    prefetch_batches: Ready batches kept ahead of the consumer.

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

  def read_batch(index):
    plan = sampler.plan(int(index), batch_size)
    raw = read_windows(cached, plan.track_ids, plan.starts, input_frames)
    return raw, plan.gains * scales[plan.track_ids], plan.swaps

  def make_batch(index):
    raw, factors, swaps = tf.numpy_function(read_batch, [index], [tf.int16, tf.float32, tf.bool],
                                            stateful=False)
    return _assemble(config, raw, factors, swaps if sampler.channel_swap else None, batch_size,
                     input_frames, output_frames)

  dataset = tf.data.Dataset.counter(start=int(skip_batches))
  dataset = dataset.map(make_batch, num_parallel_calls=num_parallel_calls, deterministic=True)
  return dataset.prefetch(prefetch_batches).with_options(_options())


def validation_dataset(config: Config, tracks: TrackList, cache_dir: str, batch_size: Optional[int] = None,
                       output_frames: Optional[int] = None, strict: bool = False,
                       num_parallel_calls: int = 2, prefetch_batches: int = 2) -> tf.data.Dataset:
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

  def read_batch(ids, first_frames):
    ids = np.repeat(ids[:, None], num_sources, axis=1)
    first_frames = np.repeat(first_frames[:, None], num_sources, axis=1)
    return read_windows(cached, ids, first_frames, input_frames), scales[ids]

  def make_batch(ids, first_frames):
    raw, factors = tf.numpy_function(read_batch, [ids, first_frames], [tf.int16, tf.float32], stateful=False)
    return _assemble(config, raw, factors, None, None, input_frames, output_frames)

  dataset = tf.data.Dataset.from_tensor_slices((track_ids, starts)).batch(batch_size)
  dataset = dataset.map(make_batch, num_parallel_calls=num_parallel_calls, deterministic=True)
  return dataset.prefetch(prefetch_batches).with_options(_options())


def _cached(config, tracks, cache_dir, strict):
  if not tracks:
    raise ValueError("no tracks given to the input pipeline")
  if all(isinstance(t, cache.CachedTrack) for t in tracks):
    return list(tracks)
  return cache.cache_tracks(config, tracks, cache_dir, strict=strict)


def _assemble(config, raw, factors, swaps, batch_size, input_frames, output_frames):
  """int16 ``[batch, sources, input_frames, channels]`` -> ``(mix, {source: centre crop})`` float32."""
  channels, num_sources = config.num_channels, config.num_sources
  raw = tf.ensure_shape(raw, [batch_size, num_sources, input_frames, channels])
  factors = tf.ensure_shape(factors, [batch_size, num_sources])
  sources = tf.cast(raw, tf.float32) * factors[:, :, tf.newaxis, tf.newaxis]
  if swaps is not None:
    swaps = tf.ensure_shape(swaps, [batch_size, num_sources])
    sources = tf.where(swaps[:, :, tf.newaxis, tf.newaxis], tf.reverse(sources, axis=[-1]), sources)
  mix = tf.reduce_sum(sources, axis=1)
  crop = (input_frames - output_frames) // 2
  targets = {name: sources[:, i, crop:crop + output_frames, :] for i, name in enumerate(config.source_names)}
  return mix, targets


def _options():
  options = tf.data.Options()
  options.deterministic = True
  options.experimental_optimization.map_parallelization = True
  return options
