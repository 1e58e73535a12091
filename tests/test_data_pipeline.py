"""The tf.data datasets against numpy references built from the cached tracks and the excerpt plans."""

import numpy as np
import pytest
import tensorflow as tf

from wave_unet_tf.config import get_preset
from wave_unet_tf.sizes import io_sizes
from wave_unet_tf.data import cache, pipeline
from wave_unet_tf.data.excerpts import ExcerptSampler
from wave_unet_tf.data.toy import write_toy_dataset
from wave_unet_tf.data.tracks import find_tracks

# Small context models (the real presets' 147443-frame inputs are exercised by the benchmark).
STEREO = get_preset("M5").replace(num_layers=4, num_frames=1000, batch_size=4)
MONO = get_preset("M1").replace(num_layers=4, num_frames=1024, batch_size=3)
MULTI = get_preset("M6").replace(num_layers=3, num_frames=500, batch_size=2)


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory):
  root = tmp_path_factory.mktemp("toy")
  # Songs of two or three output windows, so windows reaching past either end are frequent.
  write_toy_dataset(root, num_tracks=5, seconds=0.12, seed=7, num_test_tracks=1)
  return root


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
  return tmp_path_factory.mktemp("cache")


def cached(config, toy_root, cache_dir, subset="train"):
  return cache.cache_tracks(config, find_tracks(toy_root, config, subset=subset), cache_dir, progress=False)


def source_arrays(track):
  """float32 ``[frames, channels]`` per source of a cached track, in config order."""
  return list(track.sources().values())


def window(source, start, frames):
  """``source[start:start + frames]`` with zeros outside the track."""
  out = np.zeros((frames, source.shape[1]), np.float32)
  lo, hi = max(start, 0), min(start + frames, len(source))
  if hi > lo:
    out[lo - start:hi - start] = source[lo:hi]
  return out


def reference_batch(config, tracks, seed, index, channel_swap=False, remix=False):
  """The training batch ``index`` rebuilt in numpy from the sampler's plan."""
  input_frames, output_frames = io_sizes(config)
  gain_range = (config.amplify_min, config.amplify_max) if config.augmentation else None
  sampler = ExcerptSampler([t.frames for t in tracks], config.num_sources, input_frames, output_frames, seed,
                           gain_range, remix, channel_swap and config.num_channels == 2)
  plan = sampler.plan(index, config.batch_size)
  sources = [source_arrays(t) for t in tracks]
  crop = (input_frames - output_frames) // 2
  mix = np.zeros((config.batch_size, input_frames, config.num_channels), np.float32)
  targets = {name: [] for name in config.source_names}
  for b in range(config.batch_size):
    for s, name in enumerate(config.source_names):
      x = window(sources[plan.track_ids[b, s]][s], plan.starts[b, s], input_frames) * plan.gains[b, s]
      if plan.swaps[b, s]:
        x = x[:, ::-1]
      mix[b] += x
      targets[name].append(x[crop:crop + output_frames])
  return plan, mix, {k: np.stack(v) for k, v in targets.items()}


def first_batches(dataset, count):
  return [(m.numpy(), {k: v.numpy() for k, v in t.items()}) for m, t in dataset.take(count)]


@pytest.mark.parametrize("config, channel_swap, remix", [
    (STEREO, False, False), (STEREO, True, True), (MONO, False, False), (MULTI, True, False),
])
def test_training_batches_match_numpy_reference(toy_root, cache_dir, config, channel_swap, remix):
  tracks = cached(config, toy_root, cache_dir)
  dataset = pipeline.training_dataset(config, tracks, cache_dir, seed=11, channel_swap=channel_swap, remix=remix)
  input_frames, output_frames = io_sizes(config)
  mix_spec, target_spec = dataset.element_spec
  assert mix_spec.shape == (config.batch_size, input_frames, config.num_channels)
  assert mix_spec.dtype == tf.float32
  assert set(target_spec) == set(config.source_names)
  assert all(s.shape == (config.batch_size, output_frames, config.num_channels) for s in target_spec.values())
  for index, (mix, targets) in enumerate(first_batches(dataset, 3)):
    plan, ref_mix, ref_targets = reference_batch(config, tracks, 11, index, channel_swap, remix)
    np.testing.assert_allclose(mix, ref_mix, rtol=1e-6, atol=1e-7)
    for name in config.source_names:
      np.testing.assert_allclose(targets[name], ref_targets[name], rtol=1e-6, atol=1e-7)
    assert np.all((plan.gains >= config.amplify_min) & (plan.gains <= config.amplify_max))
    if remix:
      assert np.any(plan.track_ids[:, 0] != plan.track_ids[:, 1]) or np.any(plan.starts[:, 0] != plan.starts[:, 1])
    else:
      assert np.all(plan.track_ids == plan.track_ids[:, :1])


def test_mix_is_sum_of_uncropped_sources_and_targets_are_its_centre(toy_root, cache_dir):
  config = STEREO.replace(augmentation=False)
  tracks = cached(config, toy_root, cache_dir)
  (mix, targets), = first_batches(pipeline.training_dataset(config, tracks, cache_dir, seed=3), 1)
  input_frames, output_frames = io_sizes(config)
  crop = (input_frames - output_frames) // 2
  # Without augmentation and with sources at the same position, the targets sum to the mix's centre.
  np.testing.assert_allclose(sum(targets.values()), mix[:, crop:crop + output_frames], rtol=1e-6, atol=1e-7)
  plan, _, _ = reference_batch(config, tracks, 3, 0)
  assert np.all(plan.gains == 1)


def test_stream_is_deterministic_for_a_seed_and_resumes_with_skip_batches(toy_root, cache_dir):
  tracks = cached(STEREO, toy_root, cache_dir)
  stream = first_batches(pipeline.training_dataset(STEREO, tracks, cache_dir, seed=5), 4)
  again = first_batches(pipeline.training_dataset(STEREO, tracks, cache_dir, seed=5, num_parallel_calls=1), 4)
  resumed = first_batches(pipeline.training_dataset(STEREO, tracks, cache_dir, seed=5, skip_batches=2), 2)
  other = first_batches(pipeline.training_dataset(STEREO, tracks, cache_dir, seed=6), 1)
  for (m1, t1), (m2, t2) in zip(stream, again):
    np.testing.assert_array_equal(m1, m2)
  for (m1, _), (m2, _) in zip(stream[2:], resumed):
    np.testing.assert_array_equal(m1, m2)
  assert not np.array_equal(stream[0][0], other[0][0])


def test_positions_cover_whole_tracks_uniformly():
  sampler = ExcerptSampler([10_000], 2, input_frames=1200, output_frames=1000, seed=0)
  starts = np.concatenate([sampler.plan(i, 64).starts[:, 0] for i in range(200)]) + 100
  assert starts.min() >= 0 and starts.max() <= 9000
  assert starts.min() < 200 and starts.max() > 8800
  counts, _ = np.histogram(starts, bins=9, range=(0, 9001))
  assert counts.min() > 0.8 * counts.mean()


@pytest.mark.parametrize("config", [STEREO, MONO])
def test_validation_tiles_whole_songs_with_output_hop(toy_root, cache_dir, config):
  tracks = cached(config, toy_root, cache_dir, subset="test") + cached(config, toy_root, cache_dir)[:2]
  input_frames, output_frames = io_sizes(config)
  dataset = pipeline.validation_dataset(config, tracks, cache_dir, batch_size=3)
  batches = first_batches(dataset, -1)
  assert first_batches(dataset, -1)[0][0].tobytes() == batches[0][0].tobytes()  # deterministic
  mixes = np.concatenate([m for m, _ in batches])
  targets = {n: np.concatenate([t[n] for _, t in batches]) for n in config.source_names}
  tiles = [-(-t.frames // output_frames) for t in tracks]
  assert len(mixes) == sum(tiles)
  pad = (input_frames - output_frames) // 2
  first = 0
  for track, count in zip(tracks, tiles):
    sources = track.sources()
    for i, name in enumerate(config.source_names):
      # Consecutive target tiles are the whole song, zero-padded at the end.
      song = targets[name][first:first + count].reshape(-1, config.num_channels)
      np.testing.assert_array_equal(song[:track.frames], sources[name])
      assert not song[track.frames:].any()
    mix = sum(sources.values())
    for k in range(count):
      np.testing.assert_allclose(mixes[first + k], window(mix, k * output_frames - pad, input_frames),
                                 rtol=1e-6, atol=1e-7)
    first += count


def test_whole_track_accessor_for_evaluation(toy_root, cache_dir):
  track = find_tracks(toy_root, STEREO, subset="test")[0]
  audio = cache.cached_track(STEREO, track, cache_dir)
  assert set(audio) == {"mix", "accompaniment", "vocals"}
  assert all(a.shape == (round(0.12 * 22050), 2) and a.dtype == np.float32 for a in audio.values())


def test_empty_track_list_is_an_error(cache_dir):
  with pytest.raises(ValueError, match="no tracks"):
    pipeline.training_dataset(STEREO, [], cache_dir, seed=0)
