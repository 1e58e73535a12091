r"""What ``--precision float16|int8`` costs in separation quality and gains in speed, against float32.

  python benchmarks/precision.py --part=quality --models=demo/quickstart,demo/quickstart_seed1 \
      --roots=demo/toy,demo/toy_seed1
  python benchmarks/precision.py --part=speed [--song_seconds=20 --repeats=3]

quality: for each trained model and its dataset (``--models`` and ``--roots`` pair up), the test songs are
separated and scored with museval (`wave_unet_tf.evaluation.evaluate`, BSS Eval v4 as the paper) at each
precision; prints the SDR per source (median over pooled frames, and median of per-track medians) and its
difference from float32, and the SNR of each precision's outputs against float32's (all test songs joined).

speed: M5-HighSR with random weights (speed does not depend on them), the real MUSDB18 sample song resampled
to 44.1 kHz and repeated to ``--song_seconds``: `Separator` (default windows) and `StreamingSeparator`
(``--block_frames``, the steady state of a live stream: the pushes) at each precision. Every setting is
built and run once (conversion, compilation, warm-up), then the settings are timed in interleaved rounds and
each one's best round counts, so the load of a shared machine weighs on all alike: compare the ratios.

Both parts also keep their figures as ``benchmarks/results/precision_quality.json`` and
``precision_speed.json`` (`results.save`), from which ``benchmarks/charts.py`` draws the docs' chart.
"""

import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import results  # noqa: E402
from wave_unet_tf import runtime  # noqa: E402

runtime.configure()  # as the commands

from absl import app, flags  # noqa: E402

flags.DEFINE_enum("part", "both", ["quality", "speed", "both"], "What to measure.")
flags.DEFINE_list("models", [], "Trained models (any model source) for the quality part.")
flags.DEFINE_list("roots", [], "Their datasets (MUSDB18-HQ layout), one per model; the test subset is scored.")
flags.DEFINE_float("window_seconds", None, "Output seconds per forward pass (default: the Separator's).")
flags.DEFINE_string("preset", "M5-HighSR", "Preset of the speed part.")
flags.DEFINE_float("song_seconds", 20.0, "Song length of the speed part.")
flags.DEFINE_integer("block_frames", 4096, "Stream block of the speed part.")
flags.DEFINE_integer("repeats", 3, "Timed rounds of the speed part (the best of each setting counts).")
flags.DEFINE_string("song", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures",
                                         "musdb18_sample", "MUSDB18-7-SAMPLE", "train",
                                         "Music Delta - 80s Rock.stem.mp4"), "A real song (first stream).")
FLAGS = flags.FLAGS

PRECISIONS = ("float32", "float16", "int8")


def _snr(reference, estimate):
  import numpy as np
  noise = float(np.sum((estimate - reference) ** 2))
  return float("inf") if noise == 0 else 10 * np.log10(float(np.sum(reference ** 2)) / noise)


def quality(model_source, root):
  import numpy as np

  import wave_unet_tf as wut
  from wave_unet_tf import audio
  from wave_unet_tf.evaluation import POOLED, TRACK_MEDIANS, evaluate
  from wave_unet_tf.evaluation.tracks import open_tracks

  options = {"window_seconds": FLAGS.window_seconds} if FLAGS.window_seconds else {}
  tracks, _ = open_tracks(root, "test", None, True, None, "official")
  songs = [(t.name, *audio.load(os.path.join(root, "test", t.name, "mixture.wav"))) for t in tracks]
  print(f"\n{model_source} on {root}: {len(tracks)} test songs", flush=True)
  scores, outputs = {}, {}
  with tempfile.TemporaryDirectory() as scratch:
    for level in PRECISIONS:
      separator = wut.Separator(model_source, precision=level, **options)
      summary = evaluate(separator, root, subset="test", output_dir=os.path.join(scratch, level), is_wav=True,
                         progress=False, log=lambda *_: None)
      scores[level] = summary["methods"]["model"]
      outputs[level] = [separator.separate(mix, rate) for _, mix, rate in songs]
  sources = list(scores["float32"])
  print("| precision | source | SDR (pooled frames) | vs float32 | SDR (track medians) | vs float32 | "
        "SNR vs float32 |")
  print("|---|---|---|---|---|---|---|")
  worst, rows = 0.0, []
  for level in PRECISIONS:
    for source in sources:
      pooled, medians = (scores[level][source]["SDR"][key] for key in (POOLED, TRACK_MEDIANS))
      d_pooled = pooled - scores["float32"][source]["SDR"][POOLED]
      d_medians = medians - scores["float32"][source]["SDR"][TRACK_MEDIANS]
      joined = [np.concatenate([o[source] for o in outputs[name]]) for name in ("float32", level)]
      snr = _snr(*joined)
      if level != "float32":
        worst = max(worst, abs(d_pooled), abs(d_medians))
      print(f"| {level} | {source} | {pooled:.3f} | {d_pooled:+.3f} | {medians:.3f} | {d_medians:+.3f} | "
            f"{'exact' if snr == float('inf') else f'{snr:.1f} dB'} |", flush=True)
      rows.append({"model": model_source, "root": root, "precision": level, "source": source,
                   "sdr_pooled": round(pooled, 3), "sdr_track_medians": round(medians, 3),
                   "snr_vs_float32_db": None if snr == float("inf") else round(snr, 1)})
  print(f"largest SDR change against float32: {worst:.3f} dB ({'within' if worst <= 0.1 else 'NOT within'} 0.1 dB)")
  return rows


def speed():
  import numpy as np

  import wave_unet_tf as wut
  from wave_unet_tf import audio, model_cache

  config = wut.get_preset(FLAGS.preset)
  model = wut.build_model(config)
  mixture, rate = audio.load(FLAGS.song, sample_rate=config.sample_rate, channels=config.num_channels)
  samples = int(FLAGS.song_seconds * rate)
  song = np.tile(mixture, (int(np.ceil(samples / len(mixture))), 1))[:samples]
  block = FLAGS.block_frames
  load_at_start = os.getloadavg()[0]
  print(f"\nspeed: {FLAGS.preset}, random weights, {FLAGS.song_seconds:.0f} s song; best of {FLAGS.repeats} "
        f"interleaved rounds; {os.cpu_count()} CPU(s), load average {load_at_start:.1f} at the start",
        flush=True)
  options = {"window_seconds": FLAGS.window_seconds} if FLAGS.window_seconds else {}
  settings, sizes = [], {}
  for level in PRECISIONS:
    start = time.perf_counter()
    separator = wut.Separator(model, precision=level, **options)
    stream = wut.StreamingSeparator(model, block_frames=block, precision=level)
    built = time.perf_counter() - start
    if level != "float32":
      digest = model_cache.model_digest(model)[:32]
      for entry in os.listdir(model_cache.cache_dir()):
        if entry.startswith(f"lite-{digest}-{level}-"):
          sizes[(level, "stream" in entry)] = os.path.getsize(os.path.join(model_cache.cache_dir(), entry)) / 1e6
    print(f"{level}: built (converted or compiled) in {built:.1f} s", flush=True)

    def offline(separator=separator):
      separator.separate_at_model_rate(song)

    def pushes(stream=stream):
      for first in range(0, len(song), block):
        stream.push(song[first:first + block])
      stream.reset()

    settings += [(level, "Separator", offline, []), (level, f"StreamingSeparator {block}", pushes, [])]
  for _, _, run, _ in settings:
    run()  # warm-up (first calls allocate, XLA compiles)
  for _ in range(FLAGS.repeats):
    for _, _, run, times in settings:
      start = time.perf_counter()
      run()
      times.append(time.perf_counter() - start)
  load_at_end = os.getloadavg()[0]
  print(f"load average {load_at_end:.1f} at the end")
  best = {(level, what): FLAGS.song_seconds / min(times) for level, what, _, times in settings}
  print("| precision | Separator × real time | vs float32 | StreamingSeparator × real time (pushes) | vs float32 "
        "| model size, fixed windows / stream |")
  print("|---|---|---|---|---|---|")
  for level in PRECISIONS:
    offline, stream = best[(level, "Separator")], best[(level, f"StreamingSeparator {block}")]
    size = "in process" if level == "float32" else f"{sizes.get((level, False), 0):.1f} / {sizes.get((level, True), 0):.1f} MB"
    print(f"| {level} | {offline:.1f} | {offline / best[('float32', 'Separator')]:.2f} | {stream:.1f} | "
          f"{stream / best[('float32', f'StreamingSeparator {block}')]:.2f} | {size} |", flush=True)
  rows = [{"precision": level, "what": what, "x_real_time": round(best[(level, what)], 2),
           "vs_float32": round(best[(level, what)] / best[("float32", what)], 2)}
          for level in PRECISIONS for what in ("Separator", f"StreamingSeparator {block}")]
  print("kept in", results.save("precision_speed", rows, preset=FLAGS.preset, song_seconds=FLAGS.song_seconds,
                                block_frames=block, repeats=FLAGS.repeats,
                                load_average=[round(load_at_start, 1), round(load_at_end, 1)]))


def main(argv):
  del argv
  if FLAGS.part in ("quality", "both"):
    if len(FLAGS.models) != len(FLAGS.roots) or not FLAGS.models:
      raise app.UsageError("--models and --roots: one dataset per model")
    rows = [row for model_source, root in zip(FLAGS.models, FLAGS.roots) for row in quality(model_source, root)]
    print("kept in", results.save("precision_quality", rows))
  if FLAGS.part in ("speed", "both"):
    speed()


if __name__ == "__main__":
  app.run(main)
