r"""Separation speed (x real time) per preset and peak memory on a long song, with random weights, on any Keras
backend and device.

  python benchmarks/separate.py                                   # every preset, 30 s song, + memory
  python benchmarks/separate.py --presets=M5-HighSR --repeats=5 --memory_minutes=0 --command_runs=0
  python benchmarks/separate.py --backend=jax --presets=M5-HighSR --one_pass --long_seconds=180 --tf32 \
      --memory_minutes=0 --command_runs=0                           # a GPU machine with JAX only

Speed: a random 30 s 44.1 kHz stereo song, timed after the model is built. The first call includes tracing
and (with XLA) compiling the frame's graph; the following calls are the steady state. The machine may be
shared, so best and median of the repeats are printed. ``--one_pass`` also times the song (and a
``--long_seconds`` song) as one window, the whole song in one forward pass. ``--tf32`` separates the song at
the device's default matmul precision (TF32 on recent NVIDIA GPUs) and at ``highest`` (float32) and prints
how far apart they are, as an SNR. Memory: a 10-minute song separated in a fresh subprocess, which reports its
own peak resident set size (getrusage). Command: `wave-unet-separate` on a 30 s WAV timed as a whole process
(Python start, TensorFlow import, model load, compile, separation, writing), first with an empty XLA compile
cache, then with the cache the first run left, then without a compile cache (``--compile_cache=``).

``--backend`` (or ``KERAS_BACKEND``) picks the Keras backend; under JAX and PyTorch no TensorFlow is imported
(checked at the end), so it runs where only JAX or PyTorch is installed. ``--save=NAME`` keeps the figures as
``benchmarks/results/NAME.json``.
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

flags.DEFINE_enum("backend", None, ["tensorflow", "jax", "torch"], "Keras backend (default: $KERAS_BACKEND, "
                  "else TensorFlow).")
flags.DEFINE_bool("one_pass", False, "Also time the song, and a --long_seconds song, in one forward pass.")
flags.DEFINE_float("long_seconds", 180.0, "Length of the long song of --one_pass (0: none).")
flags.DEFINE_bool("tf32", False, "How far the device's default matmul precision moves the stems from 'highest'.")
flags.DEFINE_string("save", None, "Keep the figures as benchmarks/results/<save>.json.")
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


ROWS = []


def _separator(preset, window_seconds=None, model=None):
  import wave_unet_tf as wut
  from wave_unet_tf.separation import separator
  model = model or wut.build_model(wut.get_preset(preset))
  return wut.Separator(model, window_seconds=window_seconds or FLAGS.window_seconds,
                       batch_size=FLAGS.batch_size or separator.DEFAULT_BATCH_SIZE,
                       jit_compile=FLAGS.jit_compile)


def _song(seconds, seed=0):
  import numpy as np
  rng = np.random.default_rng(seed)
  return rng.uniform(-0.5, 0.5, (int(seconds * FLAGS.sample_rate), 2)).astype(np.float32)


def _timed(sep, song, repeats):
  """``(first call, best, median)`` seconds of separating ``song``."""
  import numpy as np
  start = time.perf_counter()
  sep.separate(song, FLAGS.sample_rate)
  first = time.perf_counter() - start
  times = []
  for _ in range(max(1, repeats)):
    start = time.perf_counter()
    sep.separate(song, FLAGS.sample_rate)
    times.append(time.perf_counter() - start)
  return first, min(times), float(np.median(times))


def _report(preset, label, seconds, sep, first, best, typical):
  plan = sep.plan(round(seconds * sep.config.sample_rate))
  print(f"{preset:10s} {seconds:.0f} s song, {label}: first call {first:6.3f} s ({seconds / first:6.1f}x), "
        f"best {best:6.3f} s ({seconds / best:6.1f}x real time), median {typical:6.3f} s "
        f"({seconds / typical:6.1f}x); {plan.num_windows} window(s) of {plan.input_frames} -> "
        f"{plan.output_frames} samples", flush=True)
  ROWS.append({"preset": preset, "windows": label, "song_seconds": seconds, "first_s": round(first, 4),
               "best_s": round(best, 4), "median_s": round(typical, 4), "x_real_time": round(seconds / best, 1),
               "num_windows": plan.num_windows, "input_frames": plan.input_frames})


def time_preset(preset):
  sep = _separator(preset)
  song = _song(FLAGS.seconds)
  songs = (FLAGS.seconds, FLAGS.long_seconds) if FLAGS.one_pass and FLAGS.long_seconds > 0 else (FLAGS.seconds,)
  for seconds in songs:
    waveform = song if seconds == FLAGS.seconds else _song(seconds)
    _report(preset, f"default windows ({sep.window_seconds:g} s)", seconds, sep,
            *_timed(sep, waveform, FLAGS.repeats))
    if FLAGS.one_pass:
      one = _separator(preset, window_seconds=seconds + 1, model=sep.forward_pass.model)
      _report(preset, "one pass", seconds, one, *_timed(one, waveform, FLAGS.repeats))
  if FLAGS.tf32:
    tf32_distance(preset, sep.forward_pass.model, song)


def _matmul_precision(highest: bool):
  """The backend's float32 matmul and convolution precision: ``highest`` (float32) or the device's default
  (TF32 on NVIDIA GPUs since Ampere)."""
  import keras
  backend = keras.backend.backend()
  if backend == "jax":
    import jax
    jax.config.update("jax_default_matmul_precision", "highest" if highest else None)
  elif backend == "torch":
    import torch
    torch.backends.cuda.matmul.allow_tf32 = not highest
    torch.backends.cudnn.allow_tf32 = not highest
  else:
    import tensorflow as tf
    tf.config.experimental.enable_tensor_float_32_execution(not highest)


def tf32_distance(preset, model, song):
  """The stems at the default precision against ``highest``: SNR (dB) and the largest difference."""
  import numpy as np
  stems = {}
  for highest in (True, False):
    _matmul_precision(highest)
    stems[highest] = _separator(preset, model=model).separate(song, FLAGS.sample_rate)  # compiled afresh
  _matmul_precision(False)
  reference = np.concatenate([stems[True][s] for s in sorted(stems[True])])
  other = np.concatenate([stems[False][s] for s in sorted(stems[False])])
  error = other - reference
  snr = 10 * np.log10(np.sum(reference ** 2) / max(np.sum(error ** 2), 1e-30))
  largest = float(np.max(np.abs(error)))
  said = "identical" if largest == 0 else f"SNR {snr:.1f} dB, largest difference {largest:.2e}"
  print(f"{preset:10s} default matmul precision vs highest: {said}", flush=True)
  ROWS.append({"preset": preset, "windows": "default vs highest precision", "snr_db": round(float(snr), 1),
               "max_abs_difference": largest})


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
  if FLAGS.backend:
    if "keras" in sys.modules:
      raise SystemExit("--backend: Keras is imported already")
    os.environ["KERAS_BACKEND"] = FLAGS.backend
  if FLAGS.memory_child:
    return memory_child()
  import keras
  from wave_unet_tf.backends import devices
  backend, device = keras.backend.backend(), devices.describe()
  print(f"x real time, random weights, Keras {keras.__version__} on {backend}, device: {device}, "
        f"{os.cpu_count()} CPU(s), compiled {'on' if FLAGS.jit_compile else 'off'}", flush=True)
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
    subprocess.run(child, check=True, env=dict(os.environ, KERAS_BACKEND=backend))
  if FLAGS.save:
    import results
    print("saved", results.save(FLAGS.save, ROWS, device=None if device == "CPU" else device, backend=backend,
                                 keras=keras.__version__, song_seconds=FLAGS.seconds, repeats=FLAGS.repeats))
  imported = "tensorflow" in sys.modules
  print(f"TensorFlow imported: {'yes' if imported else 'no'}", flush=True)
  if imported and backend != "tensorflow":
    raise SystemExit(f"TensorFlow was imported under KERAS_BACKEND={backend}")


if __name__ == "__main__":
  app.run(main)
