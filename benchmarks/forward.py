"""Seconds per forward pass of one M5-HighSR frame (147443 -> 16389 samples, stereo) on this machine.

    python benchmarks/forward.py [--preset M5-HighSR] [--batch_sizes 1,16] [--repeats 5]

Prints one JSON line per (batch size, jit_compile) with the best and median time per frame. Random
weights: speed does not depend on them. Reference: the original TF1 graph under tf.compat.v1 needs
0.114 s per frame at batch 1 on a 2-core machine of this kind. The lines are also kept as
``benchmarks/results/forward.json`` (`results.save`).
"""

import json
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

import results  # noqa: E402

flags.DEFINE_string("preset", "M5-HighSR", "Model preset.")
flags.DEFINE_list("batch_sizes", ["1", "16"], "Batch sizes to time.")
flags.DEFINE_list("jit_compile", ["false", "true"], "XLA settings to time.")
flags.DEFINE_integer("repeats", 5, "Timed calls per setting (after two warm-up calls).")
FLAGS = flags.FLAGS


def main(_):
  import numpy as np
  import tensorflow as tf

  import wave_unet_tf as wut

  config = wut.get_preset(FLAGS.preset)
  input_frames, output_frames = wut.io_sizes(config)
  model = wut.build_model(config)
  rows = []
  for batch_size in map(int, FLAGS.batch_sizes):
    mix = tf.constant(np.random.default_rng(0).uniform(-0.5, 0.5, (batch_size, input_frames, config.num_channels)),
                      tf.float32)
    for jit in (j.lower() == "true" for j in FLAGS.jit_compile):
      forward = tf.function(lambda x: model(x, training=False), jit_compile=jit)
      for _ in range(2):
        forward(mix)[config.source_names[0]].numpy()
      times = []
      for _ in range(FLAGS.repeats):
        start = time.perf_counter()
        forward(mix)[config.source_names[0]].numpy()
        times.append((time.perf_counter() - start) / batch_size)
      rows.append({
          "benchmark": "forward", "preset": FLAGS.preset, "input_frames": input_frames,
          "output_frames": output_frames, "batch_size": batch_size, "jit_compile": jit,
          "s_per_frame_best": round(min(times), 4), "s_per_frame_median": round(statistics.median(times), 4),
          "cpus": os.cpu_count(), "machine": platform.machine(), "tensorflow": tf.__version__})
      print(json.dumps(rows[-1]), flush=True)
  results.save("forward", rows, preset=FLAGS.preset)


if __name__ == "__main__":
  app.run(main)
