"""Real-time separation: the stream's outputs, pushed in any chunks, equal one whole-song forward pass; its
latency is fixed and stated; the streaming TFLite model runs under LiteRT alone; the live command works."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import wave_unet_tf as wut
from wave_unet_tf.config import Config
from wave_unet_tf.separation import windows
from wave_unet_tf.separation.streaming import StreamingSeparator
from wave_unet_tf.sizes import grid, model_context

from conftest import ORIGINAL_TF1, PROJECT_ROOT
from test_separation_polyphase import randomised, tiny_config

FIXTURE_MODELS = ("tiny_m5", "tiny_m6", "tiny_direct_multi", "deep_m5_thin")


@pytest.fixture(scope="module")
def fixture_models():
  models = {}
  for name in FIXTURE_MODELS:
    config = Config.from_dict(json.loads((ORIGINAL_TF1 / name / "config.json").read_text())["config"])
    models[name] = wut.convert_tf1_checkpoint(str(ORIGINAL_TF1 / name), config)
  return models


def whole_song_pass(model, song):
  """One forward pass over the padded song, as `tests/test_separation.py`."""
  config = model.wave_unet_config
  plan = windows.plan_windows(config, len(song), output_frames=len(song) + grid(config))
  outputs = model(windows.padded_song(config, plan, song)[None], training=False)
  return {k: np.asarray(v)[0, plan.keep_offset:plan.keep_offset + len(song)] for k, v in outputs.items()}


def chunk_sizes(pattern, total, seed=0):
  if pattern == "one sample":
    return [1] * total
  if pattern == "whole song":
    return [total]
  rng = np.random.default_rng(seed)
  sizes = []
  while sum(sizes) < total:
    sizes.append(int(rng.choice([1, 7, 300, 1000, 5000])))
  return sizes


def stream_song(stream, song, sizes):
  """Pushes ``song`` in chunks of ``sizes``, checking the fixed latency as it goes; returns the outputs."""
  outputs, done, emitted = [], 0, 0
  for size in sizes:
    chunk = song[done:done + size]
    done += len(chunk)
    out = stream.push(chunk)
    outputs.append(out)
    emitted += len(next(iter(out.values())))
    if not stream.resampling:
      assert emitted == max(0, done - stream.latency_frames)  # as many out as in, latency_frames later
  outputs.append(stream.flush())
  return {s: np.concatenate([o[s] for o in outputs]) for s in stream.source_names}


def assert_exact(model, block_frames, pattern, song_frames=3000, jit_compile=False, seed=1):
  config = model.wave_unet_config
  song = np.random.default_rng(seed).uniform(-0.5, 0.5, (song_frames, config.num_channels)).astype(np.float32)
  expected = whole_song_pass(model, song)
  stream = StreamingSeparator(model, block_frames=block_frames, jit_compile=jit_compile)
  actual = stream_song(stream, song, chunk_sizes(pattern, len(song), seed))
  for source in config.source_names:
    assert actual[source].shape == song.shape
    np.testing.assert_allclose(actual[source], expected[source], atol=1e-5, rtol=0, err_msg=source)


@pytest.mark.parametrize("pattern", ["one sample", "random", "whole song"])
@pytest.mark.parametrize("blocks", [1, 3])
@pytest.mark.parametrize("name", FIXTURE_MODELS)
def test_stream_of_the_original_checkpoints_equals_the_whole_song_pass(fixture_models, name, blocks, pattern):
  model = fixture_models[name]
  if name == "deep_m5_thin" and pattern == "one sample":
    pytest.skip("12 layers: 1-sample pushes are covered by the tiny models (each push costs a numpy round)")
  assert_exact(model, blocks * grid(model.wave_unet_config), pattern, song_frames=2500 if blocks == 1 else 9000)


def test_stream_compiled_with_xla_equals_the_whole_song_pass(fixture_models):
  assert_exact(fixture_models["tiny_m5"], 64, "random", jit_compile=True)


@pytest.mark.parametrize("changes", [
    {"upsampling": "linear"},
    {"merge_filter_size": 4},
    {"merge_filter_size": 1, "filter_size": 4},
    {"output_filter_size": 3},
    {"output_type": "direct", "output_activation": "linear"},
    {"num_channels": 1},
    {"num_layers": 2},
], ids=lambda changes: ",".join(f"{k}={v}" for k, v in changes.items()))
@pytest.mark.parametrize("blocks", [1, 5])
def test_stream_of_random_configs_equals_the_whole_song_pass(changes, blocks):
  model = randomised(wut.build_model(tiny_config(**changes)))
  assert_exact(model, blocks * grid(model.wave_unet_config), "random", song_frames=1500)


@pytest.mark.parametrize("block_frames", [16, 48])
@pytest.mark.parametrize("at", [601, 610])
def test_an_impulse_comes_out_latency_frames_after_it_went_in(block_frames, at):
  model = randomised(wut.build_model(tiny_config()))
  _, after = model_context(model.wave_unet_config)
  frames = 1200
  silence = np.zeros((frames, 2), np.float32)
  impulse = silence.copy()
  impulse[at] = 0.9
  quiet = stream_song(StreamingSeparator(model, block_frames=block_frames, jit_compile=False), silence, [frames])
  stream = StreamingSeparator(model, block_frames=block_frames, jit_compile=False)
  # The right context, the rest of the block, and a few samples of decimation phase.
  assert after + block_frames - 1 <= stream.latency_frames <= after + block_frames + 8
  pushed, emitted_at, outputs = 0, [], []
  for sample in impulse:
    pushed += 1
    out = stream.push(sample[None])["vocals"]
    emitted_at += [pushed] * len(out)  # the input count at which each output sample came out
    outputs.append(out)
  outputs = np.concatenate(outputs + [stream.flush()["vocals"]])
  np.testing.assert_array_equal(emitted_at, np.arange(len(emitted_at)) + 1 + stream.latency_frames)
  first = np.flatnonzero(np.any(np.abs(outputs - quiet["vocals"]) > 1e-7, axis=1))[0]
  assert first <= at - after  # the impulse reaches back at least the model's right context ...
  assert emitted_at[first] >= at + 1  # ... yet shows up only after it went in
