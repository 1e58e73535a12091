r"""Separation speed (x real time) per preset and peak memory on a long song, with random weights.

  python benchmarks/separate.py                                   # every preset, 30 s song, + memory
  python benchmarks/separate.py --presets=M5-HighSR --repeats=5 --memory_minutes=0 --command_runs=0

Speed: a random 30 s 44.1 kHz stereo song, timed after the model is built. The first call includes tracing
and (with XLA) compiling the frame's graph; the following calls are the steady state. The machine may be
shared, so best and median of the repeats are printed. Memory: a 10-minute song separated in a fresh
subprocess, which reports its own peak resident set size (getrusage). Command: `wave-unet-separate` on a
30 s WAV timed as a whole process (Python start, TensorFlow import, model load, compile, separation,
writing), first with an empty XLA compile cache, then with the cache the first run left, then without a
compile cache (``--compile_cache=``).
"""

import os
import resource
import subprocess
import sys
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from wave_unet_tf import runtime  # noqa: E402

runtime.configure(compile_cache=None)  # as the separate command, but the in-process timings compile afresh

flags.DEFINE_list("presets", ["M1", "M4", "M5", "M5-HighSR", "M6", "M7"], "Presets to time.")
flags.DEFINE_float("seconds", 30.0, "Song length for the speed test.")
flags.DEFINE_integer("sample_rate", 44100, "Song sample rate (resampled to the model's).")
flags.DEFINE_integer("repeats", 3, "Timed separations after the first.")
flags.DEFINE_float("window_seconds", None, "Output seconds per forward pass (default: the Separator's).")
flags.DEFINE_integer("batch_size", None, "Frames per forward pass (default: the Separator's).")
flags.DEFINE_bool("jit_compile", True, "Compile the forward pass with XLA.")
flags.DEFINE_float("memory_minutes", 10.0, "Song length for the memory test (0: skip it).")
flags.DEFINE_string("memory_preset", "M5-HighSR", "Preset for the memory test.")
flags.DEFINE_bool("memory_child", False, "Internal: run one memory measurement in this process.")
flags.DEFINE_integer("command_runs", 2, "Whole-process runs of wave-unet-separate on a 30 s song (0: skip).")
FLAGS = flags.FLAGS


def _separator(preset):
  import wave_unet_tf as wut
  from wave_unet_tf.separation import separator
  model = wut.build_model(wut.get_preset(preset))
  return wut.Separator(model, window_seconds=FLAGS.window_seconds or separator.DEFAULT_WINDOW_SECONDS,
                       batch_size=FLAGS.batch_size or separator.DEFAULT_BATCH_SIZE,
                       jit_compile=FLAGS.jit_compile)


def _song(seconds, seed=0):
  import numpy as np
  rng = np.random.default_rng(seed)
  return rng.uniform(-0.5, 0.5, (int(seconds * FLAGS.sample_rate), 2)).astype(np.float32)


def time_preset(preset):
  import numpy as np
  sep = _separator(preset)
  song = _song(FLAGS.seconds)
  start = time.perf_counter()
  sep.separate(song, FLAGS.sample_rate)
  first = time.perf_counter() - start
  times = []
  for _ in range(FLAGS.repeats):
    start = time.perf_counter()
    sep.separate(song, FLAGS.sample_rate)
    times.append(time.perf_counter() - start)
  best, typical = min(times), float(np.median(times))
  plan = sep.plan(round(FLAGS.seconds * sep.config.sample_rate))
  print(f"{preset:10s} {FLAGS.seconds:.0f} s song: first call {first:5.2f} s ({FLAGS.seconds / first:5.1f}x), "
        f"best {best:5.2f} s ({FLAGS.seconds / best:5.1f}x real time), median {typical:5.2f} s "
        f"({FLAGS.seconds / typical:5.1f}x); {plan.num_windows} frame(s) of {plan.input_frames} -> "
        f"{plan.output_frames} samples", flush=True)


def memory_child():
  sep = _separator(FLAGS.memory_preset)
  song = _song(FLAGS.memory_minutes * 60)
  start = time.perf_counter()
  sep.separate(song, FLAGS.sample_rate)
  elapsed = time.perf_counter() - start
  peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
  print(f"{FLAGS.memory_preset} {FLAGS.memory_minutes:.0f} min song: peak RSS {peak_kib / 2**20:.2f} GiB, "
        f"{elapsed:.1f} s ({FLAGS.memory_minutes * 60 / elapsed:.1f}x real time)", flush=True)


def time_command():
  import tempfile
  import soundfile
  import wave_unet_tf as wut
  with tempfile.TemporaryDirectory() as folder:
    model_path = os.path.join(folder, "M5-HighSR.keras")
    wut.build_model(wut.get_preset("M5-HighSR")).save(model_path)
    song_path = os.path.join(folder, "song.wav")
    soundfile.write(song_path, _song(FLAGS.seconds), FLAGS.sample_rate, subtype="PCM_16")
    command = [sys.executable, "-m", "wave_unet_tf.separate", f"--model={model_path}", "--noprogress",
               f"--output_dir={os.path.join(folder, 'separated')}",
               f"--compile_cache={os.path.join(folder, 'xla_cache')}", song_path]
    no_cache = [arg if not arg.startswith("--compile_cache=") else "--compile_cache=" for arg in command]
    runs = [(command, "empty compile cache" if run == 0 else "cached compilation")
            for run in range(FLAGS.command_runs)] + [(no_cache, "no compile cache")] * FLAGS.command_runs
    for run_command, cache in runs:
      start = time.perf_counter()
      subprocess.run(run_command, check=True, capture_output=True)
      elapsed = time.perf_counter() - start
      print(f"wave-unet-separate, M5-HighSR, {FLAGS.seconds:.0f} s WAV, whole process ({cache}): {elapsed:.2f} s "
            f"({FLAGS.seconds / elapsed:.1f}x real time)", flush=True)


def main(argv):
  del argv
  if FLAGS.memory_child:
    return memory_child()
  print(f"x real time, random weights, {os.cpu_count()} CPU(s), XLA {'on' if FLAGS.jit_compile else 'off'}",
        flush=True)
  for preset in FLAGS.presets:
    time_preset(preset)
  if FLAGS.command_runs > 0:
    time_command()
  if FLAGS.memory_minutes > 0:
    child = [sys.executable, os.path.abspath(__file__), "--memory_child", f"--memory_preset={FLAGS.memory_preset}",
             f"--memory_minutes={FLAGS.memory_minutes}", f"--sample_rate={FLAGS.sample_rate}",
             f"--jit_compile={FLAGS.jit_compile}"]
    if FLAGS.window_seconds:
      child.append(f"--window_seconds={FLAGS.window_seconds}")
    if FLAGS.batch_size:
      child.append(f"--batch_size={FLAGS.batch_size}")
    subprocess.run(child, check=True)


if __name__ == "__main__":
  app.run(main)
