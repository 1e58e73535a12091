r"""Real-time separation speed: throughput (x real time) and latency per block size, beside offline
separation of the same song in the same run; optionally the streaming TFLite model under LiteRT.

  python benchmarks/streaming.py                                  # M5-HighSR, blocks 4096 and 16384
  python benchmarks/streaming.py --block_frames=2048,4096,16384 --seconds=20 --tflite_block_frames=4096

Random weights (speed does not depend on them), a random stereo song at the model's rate. Each stream is
compiled and warmed up with one song first; the timed run pushes the song in blocks of the block size
(what a live audio callback does) and flushes. "pushes" times the pushes alone: the steady state of a live
stream, which never flushes; "with flush" adds the song's end (the last latency's worth of blocks). Settings are timed in interleaved rounds and the best round
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
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import results  # noqa: E402

flags.DEFINE_string("preset", "M5-HighSR", "Preset to time.")
flags.DEFINE_list("block_frames", ["4096", "16384"], "Block sizes to time in-process (XLA).")
flags.DEFINE_float("seconds", 20.0, "Song length.")
flags.DEFINE_integer("repeats", 3, "Timed rounds (the best of each setting is printed).")
flags.DEFINE_list("tflite_block_frames", ["4096"], "Block sizes to export and time as streaming TFLite models.")
flags.DEFINE_bool("xla_legacy_cpu_runtime", False, "Ask for XLA's older (non-thunk) CPU runtime, for "
                  "offline and streaming alike (XLA_FLAGS=--xla_cpu_use_thunk_runtime=false). The XLA of "
                  "TensorFlow 2.21 ignores it (it logs 'no longer supported'), so it changes nothing there.")
FLAGS = flags.FLAGS


def _stream_song(stream, song, block, timings):
  """Pushes the song a block at a time and flushes; records the time of the pushes alone (the steady
  state of a live stream, which never flushes) and of the whole song including the flush."""
  start = time.perf_counter()
  for first in range(0, len(song), block):
    stream.push(song[first:first + block])
  pushed = time.perf_counter()
  stream.flush()
  timings.append((pushed - start, time.perf_counter() - start))


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
  offline_times = []

  def offline_run():
    start = time.perf_counter()
    separator.separate(song, rate)
    offline_times.append(time.perf_counter() - start)

  settings = [("offline", offline_run, None, offline_times)]
  scratch = tempfile.mkdtemp()
  for kind, blocks in (("in-process XLA", FLAGS.block_frames), ("TFLite (LiteRT)", FLAGS.tflite_block_frames)):
    for block in map(int, filter(None, blocks)):
      if kind.startswith("TFLite"):
        from wave_unet_tf.deploy.tflite_stream import export_tflite_stream
        stream = StreamingSeparator(export_tflite_stream(model, os.path.join(scratch, f"{block}.tflite"), block))
      else:
        stream = StreamingSeparator(model, block_frames=block)
      timings = []
      settings.append((f"{kind} {block}", functools.partial(_stream_song, stream, song, block, timings), stream,
                       timings))
  for _, run, _, times in settings:
    run()  # compiles and warms up
    times.clear()
  for _ in range(FLAGS.repeats):
    for _, run, _, _ in settings:
      run()
  offline = FLAGS.seconds / min(offline_times)
  print(f"offline Separator (default windows, XLA): {offline:.1f}x real time")
  print("| stream, block (samples) | block (ms) | latency (samples) | latency (s) | x real time, pushes | "
        "vs offline | x real time, with flush | vs offline |")
  print("|---|---|---|---|---|---|---|---|")
  rows = [{"stream": "offline Separator", "x_real_time_pushes": round(offline, 2), "vs_offline": 1.0}]
  for name, _, stream, times in settings[1:]:
    pushes = FLAGS.seconds / min(t[0] for t in times)
    whole = FLAGS.seconds / min(t[1] for t in times)
    block = stream.block_frames
    print(f"| {name} | {1000 * block / rate:.0f} | {stream.latency_frames} | {stream.latency_frames / rate:.2f} | "
          f"{pushes:.1f} | {pushes / offline:.2f} | {whole:.1f} | {whole / offline:.2f} |", flush=True)
    rows.append({"stream": name, "block_frames": block, "latency_frames": stream.latency_frames,
                 "x_real_time_pushes": round(pushes, 2), "vs_offline": round(pushes / offline, 2),
                 "x_real_time_with_flush": round(whole, 2), "vs_offline_with_flush": round(whole / offline, 2)})
  results.save("streaming", rows, preset=FLAGS.preset, seconds=FLAGS.seconds, repeats=FLAGS.repeats)
  shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
  app.run(main)
