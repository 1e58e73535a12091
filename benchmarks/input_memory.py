r"""Peak memory of the input pipeline against dataset size: streaming from 10 and from 100 toy tracks.

  python benchmarks/input_memory.py              # 100 toy tracks of 10 s, M5-HighSR batches

Each measurement runs in a fresh process (TensorFlow imported, dataset built from a warm cache, batches
streamed) and reports its peak resident set size. Prints one JSON line per track count.
"""

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile

from absl import app, flags

flags.DEFINE_list("track_counts", ["10", "100"], "Dataset sizes to compare.")
flags.DEFINE_float("seconds", 10.0, "Length of each toy track.")
flags.DEFINE_integer("batches", 200, "Batches streamed per measurement.")
flags.DEFINE_string("preset", "M5-HighSR", "Config whose batches are produced.")
flags.DEFINE_string("_measure", None, "(internal) root,cache_dir,count: stream and print the peak RSS.")
FLAGS = flags.FLAGS


def _measure(root, cache_dir, count):
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  from wave_unet_tf.config import get_preset
  from wave_unet_tf.data import pipeline, tracks as track_finder
  import tensorflow as tf  # noqa: F401  (its own footprint, reported apart)
  baseline_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  config = get_preset(FLAGS.preset)
  tracks = track_finder.find_tracks(root, config)[:count]
  dataset = pipeline.training_dataset(config, tracks, cache_dir, seed=0)
  for _ in dataset.take(FLAGS.batches):
    pass
  peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  print(json.dumps({"tracks": len(tracks), "peak_rss_mib": round(peak_mib, 1),
                    "rss_after_importing_tensorflow_mib": round(baseline_mib, 1), "batches": FLAGS.batches,
                    "audio_minutes": round(len(tracks) * FLAGS.seconds / 60, 1), "preset": FLAGS.preset}))


def main(argv):
  del argv
  if FLAGS._measure:
    root, cache_dir, count = FLAGS._measure.split(",")
    return _measure(root, cache_dir, int(count))
  from wave_unet_tf.config import get_preset
  from wave_unet_tf.data import cache, toy, tracks as track_finder
  counts = sorted(int(c) for c in FLAGS.track_counts)
  scratch = tempfile.mkdtemp(prefix="input-memory-")
  try:
    root, cache_dir = os.path.join(scratch, "toy"), os.path.join(scratch, "cache")
    toy.write_toy_dataset(root, counts[-1], FLAGS.seconds, seed=0, num_test_tracks=0)
    config = get_preset(FLAGS.preset)
    cache.cache_tracks(config, track_finder.find_tracks(root, config), cache_dir, progress=False)
    for count in counts:
      subprocess.run([sys.executable, __file__, f"--_measure={root},{cache_dir},{count}",
                      f"--batches={FLAGS.batches}", f"--preset={FLAGS.preset}", f"--seconds={FLAGS.seconds}"],
                     check=True)
  finally:
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
  app.run(main)
