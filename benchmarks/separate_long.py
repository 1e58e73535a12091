r"""Separation of long recordings: peak memory against length, and the streamed path's speed against the
in-memory one.

  python benchmarks/separate_long.py                       # memory: 3, 60, 180 min; speed: 30 s, M5-HighSR
  python benchmarks/separate_long.py --minutes=3,10 --memory_preset=M5-HighSR

Memory: `wave-unet-separate` runs on a 44.1 kHz stereo 16-bit WAV of each length in a fresh process, and its
peak RSS is read from outside (the parent's ``RUSAGE_CHILDREN``). Hours of M5-HighSR take hours on a 2-core
CPU, so by default the long runs use a thin model of the same rate, depth, kernels and windows
(``--memory_filters`` initial filters instead of 24): what could grow with length (decoding, buffers,
resampling, writing) is the same, while the model's own activations are smaller — the M5-HighSR figures
at 3 and 10 minutes give those (``--m5_minutes``).

Speed: one process separates the same 30 s song with `Separator.separate` (in memory) and with
`Separator.separate_file` (streamed from a WAV file to WAV files), alternating, best of ``--repeats``.
"""

import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import results  # noqa: E402
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")  # as the command runs

flags.DEFINE_list("minutes", ["3", "60", "180"], "Lengths for the memory runs with the thin model.")
flags.DEFINE_list("m5_minutes", ["3", "10"], "Lengths for the memory runs with M5-HighSR itself.")
flags.DEFINE_integer("memory_filters", 4, "Initial filters of the thin model of the long memory runs.")
flags.DEFINE_float("speed_seconds", 30.0, "Song length of the speed comparison (0: skip it).")
flags.DEFINE_integer("repeats", 3, "Timed runs of each path.")
FLAGS = flags.FLAGS

RATE = 44100


def write_recording(path, minutes):
  """A 44.1 kHz stereo recording: tones and noise, written in blocks (nothing of its length in memory)."""
  import numpy as np
  import soundfile
  block = RATE * 10
  rng = np.random.default_rng(0)
  with soundfile.SoundFile(path, "w", RATE, 2, subtype="PCM_16") as f:
    for start in range(0, int(minutes * 60 * RATE), block):
      t = (start + np.arange(block))[:, None] / RATE
      f.write((0.3 * np.sin(2 * np.pi * 220 * t * np.array([1.0, 1.5])) +
               0.05 * rng.standard_normal((block, 2))).astype(np.float32))


def peak_rss_of_command(model_path, song, output_dir):
  """Runs wave-unet-separate in a child of a fresh interpreter and returns (peak RSS GiB, seconds)."""
  script = (
      "import resource, subprocess, sys, time\n"
      "start = time.perf_counter()\n"
      "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)\n"
      "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, time.perf_counter() - start)\n")
  command = [sys.executable, "-c", script, sys.executable, "-m", "wave_unet_tf.separate", "--model", model_path,
             "--output_dir", output_dir, "--noprogress", song]
  out = subprocess.run(command, check=True, capture_output=True, text=True).stdout.split()
  return int(out[0]) / 2 ** 20, float(out[1])


def memory(scratch):
  import wave_unet_tf as wut
  models = {}
  for name, config in (("M5-HighSR", wut.get_preset("M5-HighSR")),
                       (f"M5-HighSR, {FLAGS.memory_filters} filters",
                        wut.get_preset("M5-HighSR").replace(num_initial_filters=FLAGS.memory_filters))):
    models[name] = os.path.join(scratch, f"{len(models)}.keras")
    wut.build_model(config).save(models[name])
  runs = [("M5-HighSR", float(m)) for m in FLAGS.m5_minutes]
  runs += [(f"M5-HighSR, {FLAGS.memory_filters} filters", float(m)) for m in FLAGS.minutes]
  rows = []
  for name, minutes in runs:
    song = os.path.join(scratch, f"{minutes:g}min.wav")
    if not os.path.exists(song):
      write_recording(song, minutes)
    peak, seconds = peak_rss_of_command(models[name], song, os.path.join(scratch, "out"))
    print(f"memory  {name:28s} {minutes:6g} min: peak RSS {peak:5.2f} GiB, {minutes * 60 / seconds:6.1f}x real "
          f"time (whole command)", flush=True)
    rows.append({"part": "memory", "model": name, "minutes": minutes, "peak_rss_gib": round(peak, 3),
                 "x_real_time": round(minutes * 60 / seconds, 2)})
    shutil.rmtree(os.path.join(scratch, "out"), ignore_errors=True)
    os.remove(song)
  return rows


def speed(scratch):
  import numpy as np
  import soundfile

  import wave_unet_tf as wut
  model = wut.build_model(wut.get_preset("M5-HighSR"))
  separator = wut.Separator(model)
  song = os.path.join(scratch, "song.wav")
  write_recording(song, FLAGS.speed_seconds / 60)
  waveform = soundfile.read(song, dtype="float32")[0]
  separator.separate(waveform, RATE)  # compile both paths' window shapes first
  separator.separate_file(song, os.path.join(scratch, "out"))
  times = {"in memory": [], "streamed": []}
  for _ in range(FLAGS.repeats):
    start = time.perf_counter()
    separator.separate(waveform, RATE)
    times["in memory"].append(time.perf_counter() - start)
    start = time.perf_counter()
    separator.separate_file(song, os.path.join(scratch, "out"))
    times["streamed"].append(time.perf_counter() - start)
  best = {k: min(v) for k, v in times.items()}
  for k, v in best.items():
    print(f"speed   M5-HighSR {FLAGS.speed_seconds:g} s song, {k:9s}: best {v:.2f} s "
          f"({FLAGS.speed_seconds / v:.1f}x real time)")
  print(f"speed   streamed / in memory throughput: {best['in memory'] / best['streamed']:.3f}")
  return [{"part": "speed", "path": k, "song_seconds": FLAGS.speed_seconds, "best_s": round(v, 3),
           "x_real_time": round(FLAGS.speed_seconds / v, 2)} for k, v in best.items()]


def main(argv):
  del argv
  scratch = tempfile.mkdtemp(prefix="separate_long_")
  try:
    rows = speed(scratch) if FLAGS.speed_seconds else []
    rows += memory(scratch)
    print("kept in", results.save("separate_long", rows, repeats=FLAGS.repeats))
  finally:
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
  app.run(main)
