"""The polyphase inference graph computes the Keras model's inference outputs, for every context config."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import wave_unet_tf as wut
from wave_unet_tf.config import Config
from wave_unet_tf.separation import Separator, polyphase
from wave_unet_tf.separation.forward import KerasForwardPass

from conftest import ORIGINAL_MODELS, ORIGINAL_TF1, PROJECT_ROOT


def randomised(model, seed=0):
  """Every weight random (biases and interpolation weights too, which initialise to constants)."""
  rng = np.random.default_rng(seed)
  for variable in model.weights:
    fan_in = int(np.prod(variable.shape[:-1])) if len(variable.shape) > 1 else 1
    variable.assign(rng.normal(0, 1 / np.sqrt(fan_in), variable.shape).astype(np.float32))
  return model


# The config space the rewritten inference graphs (polyphase, streaming) are checked over, from tiny M5.
CONFIG_VARIANTS = [
    {},
    {"upsampling": "linear"},
    {"merge_filter_size": 4},
    {"merge_filter_size": 1, "filter_size": 4},
    {"output_filter_size": 3},
    {"output_type": "direct", "output_activation": "linear"},
    {"output_activation": "linear"},
    {"num_channels": 1},
    {"source_names": ("bass", "drums", "other", "vocals")},
    {"num_layers": 2},
]


def variant_id(changes):
  return ",".join(f"{k}={v}" for k, v in changes.items()) or "M5"


def tiny_config(**changes):
  base = dict(num_layers=4, num_initial_filters=6, filter_size=7, merge_filter_size=5, sample_rate=8000)
  return wut.get_preset("M5").replace(**{**base, **changes})


@pytest.mark.parametrize("changes", CONFIG_VARIANTS, ids=variant_id)
def test_polyphase_graph_equals_the_keras_model(changes):
  model = randomised(wut.build_model(tiny_config(**changes)))
  config = model.wave_unet_config
  input_frames, _ = wut.io_sizes(config, 300)
  mix = np.random.default_rng(1).uniform(-0.9, 0.9, (2, input_frames, config.num_channels)).astype(np.float32)
  expected = model(mix, training=False)
  actual = polyphase.forward(model, tf.constant(mix))
  for source in config.source_names:
    assert actual[source].shape == expected[source].shape
    np.testing.assert_allclose(actual[source], expected[source], atol=1e-5, rtol=0)


def test_polyphase_graph_runs_a_mixed_precision_model_in_its_compute_dtype():
  import keras
  keras.mixed_precision.set_global_policy("mixed_float16")
  try:
    model = randomised(wut.build_model(tiny_config()))
  finally:
    keras.mixed_precision.set_global_policy("float32")
  input_frames, _ = wut.io_sizes(model.wave_unet_config, 300)
  mix = np.random.default_rng(1).uniform(-0.9, 0.9, (1, input_frames, 2)).astype(np.float32)
  expected = model(mix, training=False)
  actual = polyphase.forward(model, tf.constant(mix))
  for source in expected:
    assert actual[source].dtype == tf.float32  # the outputs stay float32, as the model's
    np.testing.assert_allclose(actual[source], expected[source], atol=1e-2, rtol=0)  # float16 rounding


@pytest.mark.parametrize("name", [name for name in ORIGINAL_MODELS
                                  if json.loads((ORIGINAL_TF1 / name / "config.json").read_text())["config"]
                                  .get("context", False)])
def test_polyphase_graph_reproduces_the_original_outputs(name):
  config = Config.from_dict(json.loads((ORIGINAL_TF1 / name / "config.json").read_text())["config"])
  model = wut.convert_tf1_checkpoint(str(ORIGINAL_TF1 / name), config)
  reference = np.load(ORIGINAL_TF1 / name / "reference.npz")
  outputs = polyphase.forward(model, tf.constant(reference["input"]))
  for source in config.source_names:
    np.testing.assert_allclose(outputs[source], reference[source], atol=1e-5, rtol=0)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 15])
def test_polyphase_kernel_equals_convolving_the_upsampled_frames(size):
  rng = np.random.default_rng(size)
  channels, filters, frames = 3, 2, 20
  x = rng.normal(size=(frames, channels))
  kernel = rng.normal(size=(size, channels, filters))
  keep = rng.uniform(size=channels)
  upsampled = np.empty((2 * frames - 1, channels))
  upsampled[0::2] = x
  upsampled[1::2] = keep * x[:-1] + (1 - keep) * x[1:]
  expected = np.stack([np.einsum("tc,tcf->f", upsampled[n:n + size], kernel)
                       for n in range(len(upsampled) - size + 1)])

  folded = polyphase.polyphase_kernel(tf.constant(kernel, tf.float32), tf.constant(keep, tf.float32)).numpy()
  taps = folded.shape[0]
  pairs = np.stack([np.einsum("qc,qcf->f", np.pad(x, [(0, taps), (0, 0)])[m:m + taps], folded)
                    for m in range(frames)])
  interleaved = pairs.reshape(2 * frames, filters)[:len(expected)]
  np.testing.assert_allclose(interleaved, expected, atol=1e-5)


def test_same_padding_models_run_the_keras_graph():
  model = wut.build_model(wut.get_preset("M1").replace(num_layers=3, num_initial_filters=4))
  assert not polyphase.supports(model.wave_unet_config)
  assert not KerasForwardPass(model).polyphase
  with pytest.raises(ValueError, match="context"):
    polyphase.forward(model, tf.zeros((1, 64, 1)))


def test_separator_uses_the_polyphase_graph_unless_asked_not_to():
  model = randomised(wut.build_model(tiny_config()))
  song = np.random.default_rng(2).uniform(-0.5, 0.5, (3001, 2)).astype(np.float32)
  fast = Separator(model, window_seconds=0.1)
  plain = Separator(model, window_seconds=0.1)
  plain.forward_pass = KerasForwardPass(model, polyphase=False)
  assert fast.forward_pass.polyphase and not plain.forward_pass.polyphase
  a, b = fast.separate(song, 8000), plain.separate(song, 8000)
  for source in a:
    np.testing.assert_allclose(a[source], b[source], atol=1e-5)


def test_the_compile_cache_serves_other_weights_of_the_same_architecture(tmp_path):
  """Two runs, two models of one architecture, one cache: each run's output is its own model's."""
  import soundfile
  config = tiny_config(sample_rate=16000)
  song = np.random.default_rng(3).uniform(-0.5, 0.5, (16000, 2)).astype(np.float32)
  soundfile.write(str(tmp_path / "song.wav"), song, 16000, subtype="FLOAT")
  cache = tmp_path / "cache"
  for seed in (0, 1):
    model = randomised(wut.build_model(config), seed)
    model_path = str(tmp_path / f"model{seed}.keras")
    model.save(model_path)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("TF_XLA_FLAGS", None)
    subprocess.run([sys.executable, "-m", "wave_unet_tf.separate", f"--model={model_path}",
                    f"--output_dir={tmp_path / f'out{seed}'}", f"--compile_cache={cache}", "--noprogress",
                    str(tmp_path / "song.wav")], cwd=PROJECT_ROOT, env=env, check=True, capture_output=True)
    assert os.listdir(cache), "nothing was cached"
    written, _ = soundfile.read(str(tmp_path / f"out{seed}" / "song" / "vocals.wav"), dtype="float32")
    expected = Separator(model).separate(song, 16000)["vocals"]
    np.testing.assert_allclose(written, expected, atol=1e-5)
