"""Exported models side by side with the in-process `Separator`: speed as a ratio to it, file size, SNR.

    python benchmarks/export.py [--preset M5-HighSR] [--window_seconds 10] [--song_seconds 30]

Builds a random-weight model, exports it as a SavedModel and as float32, float16 and dynamic-range int8
TFLite models (frames of ``--window_seconds`` of output), and separates the real MUSDB18 sample song
(resampled to the model's rate, repeated to ``--song_seconds``) with each:
  in_process: `Separator(model)` (the polyphase graph compiled with XLA), the reference of every ratio;
  saved_model: ``tf.saved_model.load(dir).signatures["separate"](waveform=song)``, as a TF user calls it;
  tflite_*: `Separator(path)`, the standalone LiteRT interpreter (XNNPACK, one thread per core).
Prints one JSON line per variant; SNR is of its vocals against the in-process vocals. After a warm-up run of
each (tracing, XLA compilation, allocation), the variants run in turn ``--repeats`` times; each one's best
time counts, so a shared machine's load weighs on all of them alike.
"""

import functools
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import results  # noqa: E402

from wave_unet_tf import runtime  # noqa: E402

runtime.configure(compile_cache=None)  # as the separate command, but every variant compiles afresh

from absl import app, flags, logging  # noqa: E402

flags.DEFINE_string("preset", "M5-HighSR", "Model preset.")
flags.DEFINE_float("window_seconds", 10.0, "Output seconds per forward pass (all variants).")
flags.DEFINE_float("song_seconds", 30.0, "Length of the timed song.")
flags.DEFINE_integer("repeats", 3, "Timed runs per variant, round robin (the best counts).")
flags.DEFINE_string("song", os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures",
                                         "musdb18_sample", "MUSDB18-7-SAMPLE", "train",
                                         "Music Delta - 80s Rock.stem.mp4"), "A real song (first stream).")
FLAGS = flags.FLAGS


def _size(path):
  if os.path.isdir(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)
  return os.path.getsize(path)


def _snr(reference, estimate):
  import numpy as np
  noise = np.sum((estimate - reference) ** 2)
  return float("inf") if noise == 0 else float(10 * np.log10(np.sum(reference ** 2) / noise))


def main(_):
  logging.set_verbosity(logging.WARNING)  # the SavedModel writer's INFO lines
  import keras
  import numpy as np
  import tensorflow as tf

  import wave_unet_tf as wut
  from wave_unet_tf import audio
  from wave_unet_tf.deploy import saved_model, tflite

  config = wut.get_preset(FLAGS.preset)
  keras.utils.set_random_seed(0)
  model = wut.build_model(config)
  weights_mb = sum(int(np.prod(w.shape)) for w in model.weights) * 4 / 1e6
  mixture, rate = audio.load(FLAGS.song, sample_rate=config.sample_rate, channels=config.num_channels)
  samples = int(FLAGS.song_seconds * rate)
  song = np.tile(mixture, (int(np.ceil(samples / len(mixture))), 1))[:samples]
  in_process = wut.Separator(model, window_seconds=FLAGS.window_seconds)

  with tempfile.TemporaryDirectory() as scratch:
    exported = os.path.join(scratch, "saved_model")
    saved_model.export_saved_model(model, exported, FLAGS.window_seconds,
                                   separate_window_seconds=FLAGS.window_seconds)
    lite = {q: tflite.export_tflite(model, os.path.join(scratch, f"{q}.tflite"), q, FLAGS.window_seconds)
            for q in tflite.QUANTIZATIONS}

    loaded = tf.saved_model.load(exported).signatures["separate"]
    runs = {"in_process": lambda: in_process.separate_at_model_rate(song),
            "saved_model_separate": lambda: loaded(waveform=tf.constant(song))}
    for quantize, path in lite.items():
      runs[f"tflite_{quantize}"] = functools.partial(wut.Separator(path, window_seconds=FLAGS.window_seconds)
                                                     .separate_at_model_rate, song)
    vocals = {name: np.asarray(run()["vocals"]) for name, run in runs.items()}  # warm-up
    seconds = {name: [] for name in runs}
    for _ in range(FLAGS.repeats):  # round robin, so that the load of a shared machine falls on all alike
      for name, run in runs.items():
        start = time.perf_counter()
        run()
        seconds[name].append(time.perf_counter() - start)
    reference, reference_seconds = vocals["in_process"], min(seconds["in_process"])
    sizes = {"saved_model_separate": _size(exported), **{f"tflite_{q}": _size(p) for q, p in lite.items()}}
    rows = []
    for name in runs:
      best = min(seconds[name])
      size = sizes.get(name)
      rows.append({
          "benchmark": "export", "preset": FLAGS.preset, "variant": name,
          "ratio_to_in_process": round(reference_seconds / best, 2), "x_real_time": round(FLAGS.song_seconds / best, 2),
          "size_mb": size and round(size / 1e6, 1), "size_vs_weights": size and round(size / 1e6 / weights_mb, 3),
          "snr_db_vs_in_process": round(_snr(reference, vocals[name]), 1) if name != "in_process" else None,
          "window_seconds": FLAGS.window_seconds, "cpus": os.cpu_count()})
      print(json.dumps(rows[-1]), flush=True)
    results.save("export", rows, preset=FLAGS.preset, song_seconds=FLAGS.song_seconds, repeats=FLAGS.repeats)


if __name__ == "__main__":
  app.run(main)
