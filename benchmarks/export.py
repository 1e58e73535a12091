"""Exported models side by side: file size, x real time on this CPU, and SNR against the Keras model.

    python benchmarks/export.py [--preset M5-HighSR] [--window_seconds 10]

Exports a random-weight model as a SavedModel and as float32, float16 and dynamic-range int8 TFLite models
(all with frames of ``--window_seconds`` of output), separates the real MUSDB18 sample song (6.8 s, resampled
to the model's rate, repeated to ``--song_seconds``) with each through `Separator`, and prints one JSON line
per variant. SNR is of each variant's vocals against the Keras model's.
"""

import json
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")  # as the separate command (cli.reuse_host_memory)

from absl import app, flags  # noqa: E402

flags.DEFINE_string("preset", "M5-HighSR", "Model preset.")
flags.DEFINE_float("window_seconds", 10.0, "Output seconds per exported frame.")
flags.DEFINE_float("song_seconds", 30.0, "Length of the timed song.")
flags.DEFINE_string("song", os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures",
                                         "musdb18_sample", "MUSDB18-7-SAMPLE", "train",
                                         "Music Delta - 80s Rock.stem.mp4"), "A real song (first stream).")
FLAGS = flags.FLAGS


def _size(path):
  if os.path.isdir(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)
  return os.path.getsize(path)


def main(_):
  import keras
  import numpy as np

  import wave_unet_tf as wut
  from wave_unet_tf import audio
  from wave_unet_tf.deploy import saved_model, tflite

  config = wut.get_preset(FLAGS.preset)
  keras.utils.set_random_seed(0)
  model = wut.build_model(config)
  mixture, rate = audio.load(FLAGS.song, sample_rate=config.sample_rate, channels=config.num_channels)
  song = np.tile(mixture, (int(np.ceil(FLAGS.song_seconds * rate / len(mixture))), 1))[:int(FLAGS.song_seconds * rate)]
  reference = wut.Separator(model, window_seconds=FLAGS.window_seconds).separate_at_model_rate(song)["vocals"]

  with tempfile.TemporaryDirectory() as scratch:
    variants = {"keras": None, "saved_model": os.path.join(scratch, "saved_model")}
    saved_model.export_saved_model(model, variants["saved_model"], FLAGS.window_seconds)
    fixed = os.path.join(scratch, "fixed")
    saved_model.export_saved_model(model, fixed, FLAGS.window_seconds, batch_size=1)
    for quantize in tflite.QUANTIZATIONS:
      variants[f"tflite_{quantize}"] = tflite.convert_saved_model(fixed, os.path.join(scratch, f"{quantize}.tflite"),
                                                                  quantize)
    keras_file = os.path.join(scratch, "model.keras")
    from wave_unet_tf.model.saving import save_model
    save_model(model, keras_file)
    variants["keras"] = keras_file
    for name, path in variants.items():
      separator = wut.Separator(path, window_seconds=FLAGS.window_seconds)
      separator.separate_at_model_rate(song)  # warm-up: tracing, compiling (this frame shape), allocation
      start = time.perf_counter()
      vocals = separator.separate_at_model_rate(song)["vocals"]
      elapsed = time.perf_counter() - start
      noise = np.sum((vocals - reference) ** 2)
      snr = float("inf") if noise == 0 else float(10 * np.log10(np.sum(reference ** 2) / noise))
      print(json.dumps({"benchmark": "export", "preset": FLAGS.preset, "variant": name,
                        "size_mb": round(_size(path) / 1e6, 1), "x_real_time": round(FLAGS.song_seconds / elapsed, 2),
                        "snr_db_vs_keras": round(snr, 1), "window_seconds": FLAGS.window_seconds,
                        "cpus": os.cpu_count()}), flush=True)


if __name__ == "__main__":
  app.run(main)
