r"""Real-time separation speed: throughput (x real time) and latency per block size, beside offline
separation of the same song in the same run; optionally the streaming TFLite model under LiteRT.

  python benchmarks/streaming.py                                  # M5-HighSR, blocks 4096 and 16384
  python benchmarks/streaming.py --block_frames=2048,4096,16384 --seconds=20 --tflite_block_frames=4096

Random weights (speed does not depend on them), a random stereo song at the model's rate. Each stream is
compiled and warmed up with one song first; the timed run pushes the song in blocks of the block size
(what a live audio callback does) and flushes. The machine may be shared: compare ratios within one run.
"""

import os
import sys
import tempfile
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

flags.DEFINE_string("preset", "M5-HighSR", "Preset to time.")
flags.DEFINE_list("block_frames", ["4096", "16384"], "Block sizes to time in-process (XLA).")
flags.DEFINE_float("seconds", 20.0, "Song length.")
flags.DEFINE_integer("repeats", 2, "Timed runs per setting (best is printed).")
flags.DEFINE_list("tflite_block_frames", ["4096"], "Block sizes to export and time as streaming TFLite models.")
FLAGS = flags.FLAGS


def _best(function, repeats):
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    function()
    times.append(time.perf_counter() - start)
  return min(times)


def _stream_song(stream, song, block):
  for start in range(0, len(song), block):
    stream.push(song[start:start + block])
  stream.flush()


def main(argv):
  del argv
  import numpy as np
  import wave_unet_tf as wut
  from wave_unet_tf.separation.streaming import StreamingSeparator

  config = wut.get_preset(FLAGS.preset)
  model = wut.build_model(config)
  rate = config.sample_rate
  song = np.random.default_rng(0).uniform(-0.5, 0.5, (int(FLAGS.seconds * rate), config.num_channels)).astype(
      np.float32)
  print(f"{FLAGS.preset}, {FLAGS.seconds:.0f} s song, {os.cpu_count()} CPU(s), random weights; best of "
        f"{FLAGS.repeats}", flush=True)

  separator = wut.Separator(model)
  separator.separate(song, rate)  # compiles
  offline = FLAGS.seconds / _best(lambda: separator.separate(song, rate), FLAGS.repeats)
  print(f"offline Separator (default windows, XLA): {offline:6.1f}x real time", flush=True)

  print("| block (samples) | block (ms) | latency (samples) | latency (s) | x real time | vs offline |")
  print("|---|---|---|---|---|---|")

  def row(name, stream, block):
    _stream_song(stream, song, block)  # compiles and warms up
    speed = FLAGS.seconds / _best(lambda: _stream_song(stream, song, block), FLAGS.repeats)
    print(f"| {name} {block} | {1000 * block / rate:.0f} | {stream.latency_frames} | "
          f"{stream.latency_frames / rate:.2f} | {speed:.1f} | {speed / offline:.2f} |", flush=True)

  for block in map(int, FLAGS.block_frames):
    row("in-process XLA", StreamingSeparator(model, block_frames=block), block)
  for block in map(int, filter(None, FLAGS.tflite_block_frames)):
    from wave_unet_tf.deploy.tflite_stream import export_tflite_stream
    with tempfile.TemporaryDirectory() as scratch:
      path = export_tflite_stream(model, os.path.join(scratch, "stream.tflite"), block)
      row("TFLite (LiteRT)", StreamingSeparator(path), block)


if __name__ == "__main__":
  app.run(main)
