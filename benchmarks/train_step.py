"""Seconds per training step of M5-HighSR at batch 16 on this machine (147443 -> 16389 samples, stereo).

    python benchmarks/train_step.py [--batch_size 16] [--steps 3]

Prints one JSON line per setting (jit_compile off/on, bf16 mixed precision) with seconds per step and
examples per second, on random data (speed does not depend on it). Reference: the original TF1 graph takes
7.7 s per step at batch 16 on a 2-core machine of this kind.
"""

import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

flags.DEFINE_string("preset", "M5-HighSR", "Model preset.")
flags.DEFINE_integer("batch_size", 16, "Global batch size.")
flags.DEFINE_integer("steps", 3, "Timed steps per setting (after one warm-up step).")
flags.DEFINE_string("setting", None, "Run one setting in this process: float32, float32_jit or bfloat16.")
FLAGS = flags.FLAGS

SETTINGS = ("float32", "float32_jit", "bfloat16")


def time_setting(setting):
  import keras
  import numpy as np
  import tensorflow as tf

  if setting == "bfloat16":
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
  import wave_unet_tf as wut
  from wave_unet_tf.training.step import make_optimizer, per_example_loss

  config = wut.get_preset(FLAGS.preset)
  input_frames, output_frames = wut.io_sizes(config)
  model = wut.build_model(config)
  optimizer = make_optimizer(config)
  rng = np.random.default_rng(0)
  mix = tf.constant(rng.uniform(-0.5, 0.5, (FLAGS.batch_size, input_frames, config.num_channels)), tf.float32)
  targets = {s: tf.constant(rng.uniform(-0.5, 0.5, (FLAGS.batch_size, output_frames, config.num_channels)),
                            tf.float32) for s in config.source_names}

  @tf.function(jit_compile=setting == "float32_jit")
  def train_step(mix, targets):
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(per_example_loss(targets, model(mix, training=True), config.source_names))
    optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
    return loss

  float(train_step(mix, targets))
  times = []
  for _ in range(FLAGS.steps):
    start = time.perf_counter()
    float(train_step(mix, targets))
    times.append(time.perf_counter() - start)
  best = min(times)
  print(json.dumps({"benchmark": "train_step", "preset": FLAGS.preset, "setting": setting,
                    "batch_size": FLAGS.batch_size, "s_per_step_best": round(best, 3),
                    "s_per_step_median": round(statistics.median(times), 3),
                    "examples_per_s": round(FLAGS.batch_size / best, 2), "cpus": os.cpu_count()}), flush=True)


def main(_):
  if FLAGS.setting:
    return time_setting(FLAGS.setting)
  # One process per setting: a mixed-precision policy is global and XLA caches stay apart.
  for setting in SETTINGS:
    subprocess.run([sys.executable, __file__, f"--setting={setting}", f"--preset={FLAGS.preset}",
                    f"--batch_size={FLAGS.batch_size}", f"--steps={FLAGS.steps}"], check=True)


if __name__ == "__main__":
  app.run(main)
