"""Three training steps from the original's checkpoints reproduce its losses and weights."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import wave_unet_tf as wut
from wave_unet_tf.config import Config
from wave_unet_tf.conversion.tf1_checkpoint import original_variables
from wave_unet_tf.training.step import make_optimizer, make_train_step, per_example_loss

from conftest import ORIGINAL_TF1


@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("name", ["tiny_m5", "tiny_m6"])
def test_three_steps_match_the_original_losses_and_weights(name, jit_compile):
  folder = ORIGINAL_TF1 / name
  config = Config.from_dict(json.loads((folder / "config.json").read_text())["config"])
  recorded = json.loads((folder / "training" / "train_steps.json").read_text())
  model = wut.convert_tf1_checkpoint(str(folder), config)
  mix = tf.constant(np.load(folder / "reference.npz")["input"])
  targets = {s: tf.constant(v) for s, v in np.load(folder / "training" / "targets.npz").items()}
  step = make_train_step(model, make_optimizer(config), tf.distribute.get_strategy(), global_batch_size=2,
                         jit_compile=jit_compile)

  losses = [float(step((mix, targets))) for _ in range(3)]
  final = float(tf.reduce_mean(per_example_loss(targets, model(mix, training=True), config.source_names)))

  np.testing.assert_allclose(losses, recorded["loss_before_each_step"], atol=1e-5, rtol=0)
  assert final == pytest.approx(recorded["loss_after_3_steps"], abs=1e-5)
  expected = np.load(folder / "training" / "weights_after_3_steps.npz")
  weights = {w.path: w for w in model.weights}
  for original_name, _, keras_name in original_variables(config):
    np.testing.assert_allclose(weights[keras_name], expected[original_name], atol=1e-5, rtol=0,
                               err_msg=original_name)


def test_optimizer_uses_tf1_epsilon():
  optimizer = make_optimizer(wut.get_preset("M5"))
  assert optimizer.epsilon == 1e-8 and optimizer.beta_1 == 0.9 and optimizer.beta_2 == 0.999


def test_loss_is_mean_over_sources_of_mse():
  targets = {"a": np.ones((2, 4, 1), np.float32), "b": np.zeros((2, 4, 1), np.float32)}
  estimates = {"a": np.zeros((2, 4, 1), np.float32), "b": np.full((2, 4, 1), 3, np.float32)}
  np.testing.assert_allclose(per_example_loss(targets, estimates, ["a", "b"]), [5.0, 5.0])


def test_mixed_precision_keeps_float32_outputs():
  keras.mixed_precision.set_global_policy("mixed_bfloat16")
  try:
    model = wut.build_model(wut.get_preset("M5").replace(num_layers=3, num_initial_filters=4, num_frames=200))
    frames, _ = wut.io_sizes(model.wave_unet_config)
    outputs = model(np.zeros((1, frames, 2), np.float32), training=True)
    assert all(o.dtype == "float32" for o in outputs.values())
    assert model.get_layer("down_conv_0").compute_dtype == "bfloat16"
  finally:
    keras.mixed_precision.set_global_policy("float32")
