r"""wave-unet-separate-beam against wave-unet-separate: throughput over a folder, and peak memory per worker.

  python benchmarks/beam.py                                     # 20 songs of 30 s; memory at 3 and 30 min
  python benchmarks/beam.py --songs=6 --memory_minutes=3,10     # shorter, on a busy machine

The model is M5-HighSR with random weights (speed and memory do not depend on them), saved to a .keras file.

Throughput: the same folder of ``--songs`` random 44.1 kHz stereo songs of ``--seconds`` each, separated by
`wave-unet-separate` (one process) and by the Beam pipeline on two local worker processes
(``--direct_num_workers=2 --direct_running_mode=multi_processing``, FnApiRunner), each timed as a whole
command (start-up, model loading and compiling included); the XLA compile cache is warmed first by a short
run, so neither pays for compiling alone. Memory: the pipeline on one song of each of ``--memory_minutes``,
two worker processes; the peak resident set size of the largest process of the command's tree (the busy
worker) is read from outside (``RUSAGE_CHILDREN`` of a wrapper process).

Cost: Dataflow's batch prices per vCPU-hour and GB-hour (``--vcpu_hour_usd``, ``--gb_hour_usd``; check the
current ones for your region) applied to the measured throughput: the vCPU-hours one hour of audio takes.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import results  # noqa: E402

flags.DEFINE_integer("songs", 20, "Songs in the throughput folder (0: skip the throughput runs).")
flags.DEFINE_float("seconds", 30.0, "Length of each song of the throughput folder.")
flags.DEFINE_list("memory_minutes", ["3", "30"], "Song lengths for the memory runs ([] to skip).")
flags.DEFINE_integer("memory_filters", 24, "Initial filters of the memory runs' model (24: M5-HighSR itself; "
                     "fewer: a thin model of the same rate, depth, kernels and windows, for long songs on a slow "
                     "machine).")
flags.DEFINE_float("vcpu_hour_usd", 0.056, "Price of a vCPU-hour (Dataflow batch, us-central1, at writing).")
flags.DEFINE_float("gb_hour_usd", 0.003557, "Price of a GB-hour of worker memory (Dataflow batch).")
flags.DEFINE_float("gb_per_vcpu", 3.75, "Worker memory per vCPU (n1-standard machines).")
FLAGS = flags.FLAGS

RATE = 44100


def _write_song(path, seconds, seed):
  """A random 16-bit stereo WAV, written block by block (a 30-minute song never sits in memory)."""
  import numpy as np
  import soundfile
  rng = np.random.default_rng(seed)
  with soundfile.SoundFile(path, "w", RATE, 2, subtype="PCM_16") as f:
    left = int(seconds * RATE)
    while left:
      n = min(left, RATE * 60)
      f.write(rng.uniform(-0.5, 0.5, (n, 2)).astype(np.float32))
      left -= n


def _model(folder, filters):
  import wave_unet_tf as wut
  from wave_unet_tf.model.saving import save_model
  config = wut.get_preset("M5-HighSR").replace(num_initial_filters=filters)
  return save_model(wut.build_model(config), os.path.join(folder, f"m5_highsr_{filters}.keras"))


def _command(module, *args):
  return [sys.executable, "-m", f"wave_unet_tf.{module}", *map(str, args)]


def _timed(argv, env):
  start = time.perf_counter()
  result = subprocess.run(argv, capture_output=True, text=True, env=env)
  elapsed = time.perf_counter() - start
  if result.returncode:
    raise SystemExit(f"{' '.join(argv)} failed:\n{result.stderr[-3000:]}")
  return elapsed, result.stdout.strip().splitlines()


def _peak_rss_gib(argv, env):
  """The largest peak RSS of any process of ``argv``'s tree, in GiB (a fresh wrapper's RUSAGE_CHILDREN)."""
  wrapper = ("import resource, subprocess, sys\n"
             "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE).returncode\n"
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, code)\n")
  result = subprocess.run([sys.executable, "-c", wrapper, *argv], capture_output=True, text=True, env=env)
  kib, code = result.stdout.split()
  if int(code):
    raise SystemExit(f"{' '.join(argv)} failed: {result.stderr[-3000:]}")
  return int(kib) / 2 ** 20


def _throughput(work, model, env):
  """Times both commands over one folder; returns the pipeline's seconds."""
  songs = os.path.join(work, "songs")
  os.makedirs(songs)
  for i in range(FLAGS.songs):
    _write_song(os.path.join(songs, f"song{i:02d}.wav"), FLAGS.seconds, i)
  warm = os.path.join(work, "warm")
  os.makedirs(warm)
  _write_song(os.path.join(warm, "warm.wav"), FLAGS.seconds, 999)  # same window shapes: the cache is warm
  _timed(_command("separate", "--model", model, "--output_dir", os.path.join(work, "warm_out"),
                  "--progress=false", warm), env)

  audio = FLAGS.songs * FLAGS.seconds
  separate, _ = _timed(_command("separate", "--model", model, "--output_dir", os.path.join(work, "out_separate"),
                                "--progress=false", songs), env)
  beam, lines = _timed(_command("separate_beam", f"--input={songs}/*.wav", "--model", model,
                                f"--output_dir={os.path.join(work, 'out_beam')}", "--direct_num_workers=2",
                                "--direct_running_mode=multi_processing"), env)
  print(f"{FLAGS.songs} songs of {FLAGS.seconds:.0f} s, M5-HighSR, 44.1 kHz stereo, whole commands:")
  print(f"  wave-unet-separate:                  {separate:7.1f} s  {audio / separate:5.2f}x real time")
  print(f"  wave-unet-separate-beam, 2 processes: {beam:7.1f} s  {audio / beam:5.2f}x real time  "
        f"({lines[-1]})")
  print(f"  throughput ratio beam / separate: {separate / beam:.2f} (target >= 0.8)", flush=True)
  _rows.append({"part": "throughput", "songs": FLAGS.songs, "song_seconds": FLAGS.seconds,
                "separate_s": round(separate, 1), "beam_s": round(beam, 1), "ratio": round(separate / beam, 2)})
  return beam


_rows = []  # what the run keeps in benchmarks/results/beam.json


def main(_):
  work = tempfile.mkdtemp(prefix="wave_unet_beam_bench_")
  env = dict(os.environ, XDG_CACHE_HOME=os.path.join(work, "cache"))
  try:
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    model = _model(work, 24) if FLAGS.songs or FLAGS.memory_filters == 24 else None
    beam = _throughput(work, model, env) if FLAGS.songs else None
    peaks = {}
    memory_model = model if FLAGS.memory_filters == 24 else _model(work, FLAGS.memory_filters)
    for minutes in map(float, FLAGS.memory_minutes):
      folder = os.path.join(work, f"memory_{minutes:g}")
      os.makedirs(folder)
      _write_song(os.path.join(folder, "song.wav"), minutes * 60, 7)
      peaks[minutes] = _peak_rss_gib(_command("separate_beam", f"--input={folder}/*.wav", "--model", memory_model,
                                              f"--output_dir={folder}/out", "--direct_num_workers=2",
                                              "--direct_running_mode=multi_processing"), env)
      shutil.rmtree(folder)
      model_name = "M5-HighSR" if FLAGS.memory_filters == 24 else f"M5-HighSR with {FLAGS.memory_filters} filters"
      print(f"peak memory of a worker, {minutes:g}-minute song, {model_name}: {peaks[minutes]:.2f} GiB", flush=True)
      _rows.append({"part": "memory", "model": model_name, "minutes": minutes, "peak_rss_gib": round(peaks[minutes], 3)})
    if len(peaks) > 1:
      shortest, longest = min(peaks), max(peaks)
      print(f"  {longest:g} min / {shortest:g} min: {peaks[longest] / peaks[shortest]:.2f}x")

    if beam is None:
      results.save("beam", _rows)
      return
    vcpu_hours = 2 * beam / (FLAGS.songs * FLAGS.seconds)  # two vCPUs this long per second (or hour) of audio
    cost = vcpu_hours * (FLAGS.vcpu_hour_usd + FLAGS.gb_per_vcpu * FLAGS.gb_hour_usd)
    print(f"cost of one hour of audio at this speed: {vcpu_hours:.2f} vCPU-hours, ${cost:.3f} on Dataflow's batch "
          f"prices (${FLAGS.vcpu_hour_usd}/vCPU-hour, ${FLAGS.gb_hour_usd}/GB-hour, {FLAGS.gb_per_vcpu} GB per vCPU)")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    _rows.append({"part": "cost", "vcpu_hours_per_audio_hour": round(vcpu_hours, 3), "usd_per_audio_hour": round(cost, 4)})
    results.save("beam", _rows)
  finally:
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
  app.run(main)
