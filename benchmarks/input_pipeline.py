r"""Input pipeline throughput: warm-cache batches per second of M5-HighSR-shaped batches, and first-time decoding.

  python benchmarks/input_pipeline.py                      # on a toy dataset written to a temporary folder
  python benchmarks/input_pipeline.py --musdb_root ~/MUSDB18 --cache_dir /tmp/cache

Prints one JSON line: ``batches_per_s`` (16 x 147443 x 2 in, 2 sources x 16 x 16389 x 2 out, after warm-up,
cache on disk, as numpy arrays: what the JAX and PyTorch steps take), ``examples_per_cpu_s`` (examples per
second of CPU time the process spent: what one core delivers, whatever else runs on the host) and
``cores_for_1500_examples_per_s`` (``--target``) from it, and ``decode_s_per_audio_minute`` (decode, resample
and cache, per minute of audio), plus the settings; the figures go to ``benchmarks/results/input_pipeline.json``. With the MUSDB18 sample fixture present it also decodes that ``.stem.mp4`` (AAC through ffmpeg):
``decode_s_per_audio_minute_stem_mp4``.
"""

import json
import math
import os
import pathlib
import shutil
import tempfile
import time

from absl import app, flags

flags.DEFINE_string("preset", "M5-HighSR", "Config whose batch shapes are produced.")
flags.DEFINE_string("musdb_root", None, "Dataset to read (default: a toy dataset in a temporary folder).")
flags.DEFINE_string("cache_dir", None, "Cache folder (default: temporary, so decoding is timed from scratch).")
flags.DEFINE_integer("num_tracks", 8, "Toy tracks to write when --musdb_root is not given.")
flags.DEFINE_float("seconds", 30.0, "Length of each toy track.")
flags.DEFINE_integer("batches", 60, "Batches timed.")
flags.DEFINE_integer("warmup_batches", 10, "Batches read before timing starts.")
flags.DEFINE_integer("num_parallel_calls", None, "Batches assembled at once (default: the pipeline's).")
flags.DEFINE_integer("target", 1500, "Examples per second to feed (1500: M5-HighSR bf16 at batch 64 on an H200).")
flags.DEFINE_boolean("save", True, "Keep the figures in benchmarks/results.")
FLAGS = flags.FLAGS

STEM_FIXTURE = (pathlib.Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "musdb18_sample" /
                "MUSDB18-7-SAMPLE")


def _decode_seconds_per_minute(config, tracks, cache_dir):
  from wave_unet_tf.data import cache
  start = time.perf_counter()
  cached = cache.cache_tracks(config, tracks, cache_dir, progress=False)
  elapsed = time.perf_counter() - start
  minutes = sum(t.frames for t in cached) / config.sample_rate / 60
  return elapsed / minutes, cached


def main(argv):
  del argv
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  from wave_unet_tf.config import get_preset
  from wave_unet_tf.sizes import io_sizes
  from wave_unet_tf.data import pipeline, toy, tracks as track_finder
  config = get_preset(FLAGS.preset)
  scratch = tempfile.mkdtemp(prefix="input-pipeline-")
  try:
    root = FLAGS.musdb_root
    if root is None:
      root = os.path.join(scratch, "toy")
      toy.write_toy_dataset(root, FLAGS.num_tracks, FLAGS.seconds, seed=0)
    cache_dir = FLAGS.cache_dir or os.path.join(scratch, "cache")
    tracks = track_finder.find_tracks(root, config, subset="train")
    decode_s, cached = _decode_seconds_per_minute(config, tracks, cache_dir)
    result = {}
    if STEM_FIXTURE.is_dir():
      stem_tracks = track_finder.find_tracks(STEM_FIXTURE, config, subset="train")
      result["decode_s_per_audio_minute_stem_mp4"] = round(
          _decode_seconds_per_minute(config, stem_tracks, os.path.join(scratch, "stem-cache"))[0], 3)

    parallel = FLAGS.num_parallel_calls or pipeline.DEFAULT_PARALLEL_CALLS
    dataset = pipeline.training_dataset(config, cached, cache_dir, seed=0, num_parallel_calls=parallel)
    batches = dataset.as_numpy_iterator()
    for _ in range(FLAGS.warmup_batches):
      next(batches)
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(FLAGS.batches):
      mix, targets = next(batches)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    input_frames, output_frames = io_sizes(config)
    assert mix.shape == (config.batch_size, input_frames, config.num_channels), mix.shape
    per_core = FLAGS.batches * config.batch_size / cpu
    result = {
        "batches_per_s": round(FLAGS.batches / elapsed, 2),
        "examples_per_s": round(FLAGS.batches * config.batch_size / elapsed, 1),
        "examples_per_cpu_s": round(per_core, 1),
        f"cores_for_{FLAGS.target}_examples_per_s": math.ceil(FLAGS.target / per_core),
        "num_parallel_calls": parallel,
        "decode_s_per_audio_minute": round(decode_s, 3),
        **result,
        "preset": FLAGS.preset, "batch": [config.batch_size, input_frames, config.num_channels],
        "targets": [len(targets), config.batch_size, output_frames, config.num_channels],
        "tracks": len(cached), "audio_minutes": round(sum(t.frames for t in cached) / config.sample_rate / 60, 2),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(result))
    if FLAGS.save:
      import sys
      sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
      from benchmarks import results
      results.save("input_pipeline", [result], preset=FLAGS.preset)
  finally:
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
  app.run(main)
