r"""Real-time separation speed: throughput (x real time) and latency per block size, beside offline
separation of the same song in the same run; optionally the streaming TFLite model under LiteRT.

  python benchmarks/streaming.py                                  # M5-HighSR, blocks 4096 and 16384
  python benchmarks/streaming.py --block_frames=2048,4096,16384 --seconds=20 --tflite_block_frames=4096

Random weights (speed does not depend on them), a random stereo song at the model's rate. Each stream is
compiled and warmed up with one song first; the timed run pushes the song in blocks of the block size
(what a live audio callback does) and flushes. Settings are timed in interleaved rounds and the best round
of each is printed: the machine may be shared, so compare ratios within one run.
"""

import functools
import os
import shutil
import sys
import tempfile
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

flags.DEFINE_string("preset", "M5-HighSR", "Preset to time.")
flags.DEFINE_list("block_frames", ["4096", "16384"], "Block sizes to time in-process (XLA).")
flags.DEFINE_float("seconds", 20.0, "Song length.")
flags.DEFINE_integer("repeats", 3, "Timed rounds (the best of each setting is printed).")
flags.DEFINE_list("tflite_block_frames", ["4096"], "Block sizes to export and time as streaming TFLite models.")
flags.DEFINE_bool("xla_legacy_cpu_runtime", True, "Run XLA's CPU code on its older (non-thunk) runtime, for "
                  "offline and streaming alike (XLA_FLAGS=--xla_cpu_use_thunk_runtime=false): much faster for the "
                  "streaming step's many small operations on this CPU.")
FLAGS = flags.FLAGS


def _stream_song(stream, song, block):
  for start in range(0, len(song), block):
    stream.push(song[start:start + block])
  stream.flush()


def main(argv):
  del argv
  if FLAGS.xla_legacy_cpu_runtime:  # read by XLA when TensorFlow first compiles, so set before importing it
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_use_thunk_runtime=false").strip()
  import numpy as np
  import wave_unet_tf as wut
  from wave_unet_tf.separation.streaming import StreamingSeparator

  config = wut.get_preset(FLAGS.preset)
  model = wut.build_model(config)
  rate = config.sample_rate
  song = np.random.default_rng(0).uniform(-0.5, 0.5, (int(FLAGS.seconds * rate), config.num_channels)).astype(
      np.float32)
  print(f"{FLAGS.preset}, {FLAGS.seconds:.0f} s song, {os.cpu_count()} CPU(s), random weights; best of "
        f"{FLAGS.repeats}; XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}", flush=True)

  # Every setting is compiled and warmed up first, then timed in rounds (offline, then each stream), so that
  # load from other processes on a shared machine weighs on all of them alike; the best round counts.
  separator = wut.Separator(model)
  settings = [("offline Separator (default windows, XLA)", lambda: separator.separate(song, rate), None)]
  for block in map(int, FLAGS.block_frames):
    stream = StreamingSeparator(model, block_frames=block)
    settings.append((f"in-process XLA {block}", functools.partial(_stream_song, stream, song, block), stream))
  scratch = tempfile.mkdtemp()
  for block in map(int, filter(None, FLAGS.tflite_block_frames)):
    from wave_unet_tf.deploy.tflite_stream import export_tflite_stream
    stream = StreamingSeparator(export_tflite_stream(model, os.path.join(scratch, f"stream{block}.tflite"), block))
    settings.append((f"TFLite (LiteRT) {block}", functools.partial(_stream_song, stream, song, block), stream))
  best = {}
  for name, run, _ in settings:
    run()  # compiles and warms up
  for _ in range(FLAGS.repeats):
    for name, run, _ in settings:
      start = time.perf_counter()
      run()
      best[name] = min(best.get(name, float("inf")), time.perf_counter() - start)
  offline = FLAGS.seconds / best[settings[0][0]]
  print(f"{settings[0][0]}: {offline:.1f}x real time")
  print("| stream, block (samples) | block (ms) | latency (samples) | latency (s) | x real time | vs offline |")
  print("|---|---|---|---|---|---|")
  for name, _, stream in settings[1:]:
    speed = FLAGS.seconds / best[name]
    block = stream.block_frames
    print(f"| {name} | {1000 * block / rate:.0f} | {stream.latency_frames} | {stream.latency_frames / rate:.2f} | "
          f"{speed:.1f} | {speed / offline:.2f} |", flush=True)
  shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
  app.run(main)
