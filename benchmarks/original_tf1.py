"""The original Wave-U-Net's TF1 graph, rebuilt with ``tf.compat.v1`` ops and timed on this machine.

    python benchmarks/original_tf1.py [--what forward,train,separate]

The reference figures for this project's speed targets were measured with the original code run under
``tf.compat.v1``; machines of "this kind" differ, so this script measures the same graph here, side by side
with `forward.py`, `train_step.py` and `separate.py`. The graph is the original's (``UnetAudioSeparator``
with M5-HighSR's config): ``tf.nn.conv1d`` + bias + ``max(0.2 x, x)``, decimation by slicing, learned
interpolation as a width-2 ``conv2d`` plus a ``gather`` that interleaves, crop-and-concat, difference output.
Separation tiles the song as the original's ``Predict.py`` does: one batch-1 session run per output frame.
Random weights; prints one JSON line per measurement.
"""

import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

flags.DEFINE_list("what", ["forward", "train", "separate"], "Measurements to take.")
flags.DEFINE_integer("repeats", 3, "Timed repeats (after one warm-up).")
flags.DEFINE_integer("train_batch_size", 16, "Batch of the training-step timing.")
flags.DEFINE_float("song_seconds", 30.0, "Song length of the separation timing (44.1 kHz stereo).")
FLAGS = flags.FLAGS

NUM_LAYERS, FILTERS, DOWN_KERNEL, UP_KERNEL, CHANNELS = 12, 24, 15, 5, 2
SOURCES = ("accompaniment", "vocals")


def original_graph(tf, mix, training):
  """M5-HighSR as the original builds it, in graph mode; returns ``{source: [batch, frames, 2]}``."""
  v1 = tf.compat.v1

  def conv(x, filters, kernel, name, activation=True):
    w = v1.get_variable(name + "/kernel", [kernel, x.shape[-1], filters])
    b = v1.get_variable(name + "/bias", [filters], initializer=v1.zeros_initializer())
    y = tf.nn.bias_add(tf.nn.conv1d(x, w, 1, "VALID"), b)
    return tf.maximum(0.2 * y, y) if activation else y

  def crop(x, frames):
    surplus = x.shape[1] - frames
    return x[:, surplus // 2:surplus // 2 + frames]

  def learned_upsample(x, level):
    features = x.shape[-1]
    w = tf.sigmoid(v1.get_variable(f"interp_{level}", [features]))
    kernel = tf.stack([tf.linalg.diag(w), tf.linalg.diag(1.0 - w)])[None]  # [1, 2, F, F]
    between = tf.nn.conv2d(x[:, None], kernel, 1, "VALID")[:, 0]
    width = x.shape[1]
    both = tf.concat([tf.transpose(x, [1, 0, 2]), tf.transpose(between, [1, 0, 2])], 0)
    order = [i // 2 if i % 2 == 0 else width + i // 2 for i in range(2 * width - 1)]
    return tf.transpose(tf.gather(both, order), [1, 0, 2])

  with v1.variable_scope("separator"):
    skips, x = [], mix
    for i in range(NUM_LAYERS):
      x = conv(x, FILTERS * (i + 1), DOWN_KERNEL, f"down_{i}")
      skips.append(x)
      x = x[:, ::2]
    x = conv(x, FILTERS * (NUM_LAYERS + 1), DOWN_KERNEL, "bottleneck")
    for i in range(NUM_LAYERS):
      x = learned_upsample(x, i)
      x = tf.concat([crop(skips[-i - 1], x.shape[1]), x], -1)
      x = conv(x, FILTERS * (NUM_LAYERS - i), UP_KERNEL, f"up_{i}")
    x = tf.concat([crop(mix, x.shape[1]), x], -1)
    accompaniment = tf.tanh(conv(x, CHANNELS, 1, "out", activation=False))
    vocals = crop(mix, accompaniment.shape[1]) - accompaniment
    if not training:
      vocals = tf.clip_by_value(vocals, -1.0, 1.0)
  return {"accompaniment": accompaniment, "vocals": vocals}


def _timed(run, repeats):
  run()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    run()
    times.append(time.perf_counter() - start)
  return min(times), statistics.median(times)


def main(_):
  import numpy as np
  import tensorflow as tf

  import wave_unet_tf as wut

  tf.compat.v1.disable_eager_execution()
  config = wut.get_preset("M5-HighSR")
  input_frames, output_frames = wut.io_sizes(config)
  rng = np.random.default_rng(0)
  common = {"benchmark": "original_tf1", "preset": "M5-HighSR", "cpus": os.cpu_count()}

  if "forward" in FLAGS.what or "separate" in FLAGS.what:
    graph = tf.Graph()
    with graph.as_default():
      mix = tf.compat.v1.placeholder(tf.float32, [1, input_frames, CHANNELS])
      outputs = original_graph(tf, mix, training=False)
      session = tf.compat.v1.Session(graph=graph)
      session.run(tf.compat.v1.global_variables_initializer())
    frame = rng.uniform(-0.5, 0.5, (1, input_frames, CHANNELS)).astype(np.float32)
    if "forward" in FLAGS.what:
      best, median = _timed(lambda: session.run(outputs, {mix: frame}), FLAGS.repeats)
      print(json.dumps({**common, "measure": "forward", "batch_size": 1, "s_per_frame_best": round(best, 4),
                        "s_per_frame_median": round(median, 4)}), flush=True)
    if "separate" in FLAGS.what:
      song = rng.uniform(-0.5, 0.5, (int(FLAGS.song_seconds * 44100), CHANNELS)).astype(np.float32)
      context = (input_frames - output_frames) // 2

      def separate():  # the original's tiling: hop = output frames, zero-padded by the context
        frames = -(-len(song) // output_frames)
        padded = np.zeros((frames * output_frames + input_frames - output_frames, CHANNELS), np.float32)
        padded[context:context + len(song)] = song
        for k in range(frames):
          window = padded[k * output_frames:k * output_frames + input_frames][None]
          session.run(outputs, {mix: window})

      best, median = _timed(separate, max(1, FLAGS.repeats - 1))
      print(json.dumps({**common, "measure": "separate", "song_seconds": FLAGS.song_seconds,
                        "x_real_time_best": round(FLAGS.song_seconds / best, 2),
                        "x_real_time_median": round(FLAGS.song_seconds / median, 2)}), flush=True)

  if "train" in FLAGS.what:
    batch = FLAGS.train_batch_size
    graph = tf.Graph()
    with graph.as_default():
      mix = tf.compat.v1.placeholder(tf.float32, [batch, input_frames, CHANNELS])
      targets = {s: tf.compat.v1.placeholder(tf.float32, [batch, output_frames, CHANNELS]) for s in SOURCES}
      outputs = original_graph(tf, mix, training=True)
      loss = tf.add_n([tf.reduce_mean(tf.square(targets[s] - outputs[s])) for s in SOURCES]) / len(SOURCES)
      step = tf.compat.v1.train.AdamOptimizer(1e-4).minimize(loss)
      session = tf.compat.v1.Session(graph=graph)
      session.run(tf.compat.v1.global_variables_initializer())
    feed = {mix: rng.uniform(-0.5, 0.5, (batch, input_frames, CHANNELS)).astype(np.float32)}
    feed.update({targets[s]: rng.uniform(-0.5, 0.5, (batch, output_frames, CHANNELS)).astype(np.float32)
                 for s in SOURCES})
    best, median = _timed(lambda: session.run([step, loss], feed), FLAGS.repeats)
    print(json.dumps({**common, "measure": "train_step", "batch_size": batch, "s_per_step_best": round(best, 3),
                      "s_per_step_median": round(median, 3), "examples_per_s": round(batch / best, 2)}),
          flush=True)


if __name__ == "__main__":
  app.run(main)
