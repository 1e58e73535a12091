r"""The in-browser site against the Python LiteRT path, in one run on one host.

  python benchmarks/browser.py [--preset M5-HighSR --precisions float32,float16,int8 --song_seconds 20]

For each precision a site is built (``wave-unet-export --web``'s `build_site`, random weights: speed does not
depend on them) and served from 127.0.0.1 with the cross-origin isolation headers; Debian's headless Chromium
(Playwright) separates the MUSDB18 sample song (resampled to the model's rate, repeated to ``--song_seconds``)
with ``waveUNet.separate`` and streams it with ``waveUNet.stream()`` in blocks of ``--block_frames``. The
Python side runs the very same ``.tflite`` files under the LiteRT interpreter (``ai-edge-litert``, one thread
per core, as the browser): `Separator` on the fixed-window model, `StreamingSeparator` on the streaming one;
float32 also with one thread on both sides. ``--ceiling`` adds the bound on the float32 ratio: one 512x512
matrix product (a FULLY_CONNECTED, the kind of arithmetic the convolutions are) through the same worker,
one thread on both sides. Every setting runs once to warm up, then the settings are timed in interleaved
rounds and each one's median counts, so the load of a shared host weighs on all alike: compare the ratios.
Also printed: the SNR of each precision's browser output against the browser's float32. ``--save`` keeps the
figures in benchmarks/results/browser.json.
"""

import base64
import functools
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from wave_unet_tf import runtime  # noqa: E402

runtime.configure()

from absl import app, flags  # noqa: E402

flags.DEFINE_string("preset", "M5-HighSR", "The model's preset (random weights).")
flags.DEFINE_list("precisions", ["float32", "float16", "int8", "int8-full"], "The sites' precisions; int8-full: "
                  "the fixed-window model fully quantized to int8 (weights and activations, calibrated on the song's "
                  "windows; not one of --web's precisions), the stream float32.")
flags.DEFINE_float("song_seconds", 20.0, "Song length.")
flags.DEFINE_float("window_seconds", None, "Output seconds per window of the sites (default: the site's).")
flags.DEFINE_integer("block_frames", 4096, "Stream block.")
flags.DEFINE_float("stream_seconds", 10.0, "Audio pushed through the stream per timed round.")
flags.DEFINE_list("threads", ["0", "1"], "Browser threads to time float32 with (0: one per core, the page's "
                  "default; 1: a single thread, what a host without the isolation headers gives).")
flags.DEFINE_integer("repeats", 3, "Timed rounds (the median of each setting counts).")
flags.DEFINE_bool("ceiling", True, "Also time one float32 matrix product in the browser and natively (one thread).")
flags.DEFINE_bool("save", False, "Keep the figures in benchmarks/results/browser.json.")
flags.DEFINE_string("song", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures",
                                         "musdb18_sample", "MUSDB18-7-SAMPLE", "train",
                                         "Music Delta - 80s Rock.stem.mp4"), "A real song (first stream).")
FLAGS = flags.FLAGS

JS_CODEC = """
const dec = (s) => new Float32Array(Uint8Array.from(atob(s), (c) => c.charCodeAt(0)).buffer);
const enc = (a) => { const b = new Uint8Array(a.buffer, a.byteOffset, a.byteLength); let s = '';
  for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode.apply(null, b.subarray(i, i + 0x8000));
  return btoa(s); };
"""


def _b64(x):
  import numpy as np
  return base64.b64encode(np.ascontiguousarray(x, np.float32).tobytes()).decode()


def _snr(reference, estimate):
  import numpy as np
  return 10 * np.log10(np.sum(reference ** 2) / max(np.sum((estimate - reference) ** 2), 1e-30))


def cpu() -> str:
  """The CPU's family/model and its widest vectors (what native XNNPACK computes with), from /proc/cpuinfo."""
  info = {}
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
  except OSError:
    return "unknown CPU"
  flags = info.get("flags", "").split()
  vectors = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "SSE"
  family, model = info.get("cpu family", "?"), info.get("model", "?")
  return f"{info.get('model name', '?')} (family {family}, model {model}), {vectors}"


def matmul_site(template, folder, rows=16384, size=512):
  """A copy of the site ``template`` whose window model is one ``[rows, size] x [size, size]`` matrix product
  (its input ``mix`` read as ``rows`` frames of ``size`` channels): the worker runs it as a window."""
  import json
  import shutil

  import numpy as np
  import tensorflow as tf
  weights = tf.constant(np.random.default_rng(0).standard_normal((size, size)).astype(np.float32) / size ** 0.5)
  module = tf.Module()
  module.product = tf.function(lambda mix: {"out": tf.reshape(tf.matmul(tf.reshape(mix, [rows, size]), weights),
                                                              [1, rows, size])},
                               input_signature=[tf.TensorSpec([1, rows, size], tf.float32, name="mix")])
  shutil.copytree(template, folder)
  tf.saved_model.save(module, os.path.join(folder, "saved"),
                      signatures={"serving_default": module.product.get_concrete_function()})
  with open(os.path.join(folder, "model.tflite"), "wb") as f:
    f.write(tf.lite.TFLiteConverter.from_saved_model(os.path.join(folder, "saved")).convert())
  shutil.rmtree(os.path.join(folder, "saved"))
  with open(os.path.join(folder, "manifest.json")) as f:
    manifest = json.load(f)
  manifest["window"]["inputFrames"], manifest["channels"] = rows, size
  with open(os.path.join(folder, "manifest.json"), "w") as f:
    json.dump(manifest, f)
  return 2 * rows * size * size


def full_integer_model(model, output, song, window_seconds):
  """The fixed-window TFLite model with int8 weights and activations (float32 in and out), its ranges calibrated
  on windows of ``song``; written to ``output``."""
  import numpy as np
  import tensorflow as tf

  from wave_unet_tf.deploy import saved_model
  from wave_unet_tf.deploy.saved_model import CONFIG_ASSET
  from wave_unet_tf.deploy.tflite import _with_metadata
  with tempfile.TemporaryDirectory() as scratch:
    plan = saved_model.export_saved_model(model, os.path.join(scratch, "fixed"), window_seconds, batch_size=1,
                                          xla=False, lite=True)
    converter = tf.lite.TFLiteConverter.from_saved_model(os.path.join(scratch, "fixed"),
                                                         signature_keys=["serving_default"])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]

    def windows():
      padded = np.pad(song, [(plan.context_before, plan.input_frames), (0, 0)])
      for k in range(min(8, -(-len(song) // plan.stride))):
        start = k * plan.stride
        yield {"mix": padded[start:start + plan.input_frames][None].astype(np.float32)}

    converter.representative_dataset = windows
    with open(os.path.join(scratch, "fixed", "assets", CONFIG_ASSET)) as f:  # the Python runner reads it
      flatbuffer = _with_metadata(converter.convert(), f.read())
  with open(output, "wb") as f:
    f.write(flatbuffer)


def matmul_settings(chromium, server, folder):
  """The ceiling's settings: its product in the browser (worker, one thread) and under the Python LiteRT
  interpreter (one thread)."""
  import json

  import numpy as np
  from ai_edge_litert.interpreter import Interpreter
  with open(os.path.join(folder, "manifest.json")) as f:
    window = json.load(f)["window"]
  page = chromium.new_page()
  page.goto(f"http://127.0.0.1:{server.server_address[1]}/?threads=1")
  page.evaluate("window.waveUNet.ready")
  size = window["inputFrames"] * 512

  def browser():
    return page.evaluate("""async (size) => { const mix = new Float32Array(size).fill(0.5);
      const t = performance.now(); await window.waveUNet.call({type: 'window', mix}, [mix.buffer]);
      return (performance.now() - t) / 1000; }""", size)

  runner = Interpreter(model_path=os.path.join(folder, "model.tflite"), num_threads=1).get_signature_runner()
  mix = np.full([1, window["inputFrames"], 512], 0.5, np.float32)

  def native():
    start = time.perf_counter()
    runner(mix=mix)
    return time.perf_counter() - start

  return [("browser matmul", "float32", 1, browser, []), ("python matmul", "float32", 1, native, [])]


def main(argv):
  del argv
  start_load = os.getloadavg()[0]
  import numpy as np
  from playwright.sync_api import sync_playwright

  import wave_unet_tf as wut
  from wave_unet_tf import audio
  from wave_unet_tf.deploy.tflite import TFLiteForwardPass, default_threads
  from wave_unet_tf.web.serve import serve_in_background
  from wave_unet_tf.web.site import DEFAULT_WINDOW_SECONDS, build_site

  config = wut.get_preset(FLAGS.preset)
  model = wut.build_model(config)
  mixture, rate = audio.load(FLAGS.song, sample_rate=config.sample_rate, channels=config.num_channels)
  samples = int(FLAGS.song_seconds * rate)
  song = np.tile(mixture, (int(np.ceil(samples / len(mixture))), 1))[:samples]
  block = FLAGS.block_frames
  pushes = int(FLAGS.stream_seconds * rate) // block
  print(f"{FLAGS.preset}, random weights, {FLAGS.song_seconds:.0f} s song, stream of {pushes} blocks of {block}; "
        f"median of {FLAGS.repeats} interleaved rounds; {cpu()}, {os.cpu_count()} CPU(s), Python LiteRT with "
        f"{default_threads()} threads; load average {os.getloadavg()[0]:.1f} at the start", flush=True)
  scratch = tempfile.mkdtemp(prefix="browser-bench-")
  sites = {}
  for precision in FLAGS.precisions:
    start = time.perf_counter()
    folder = os.path.join(scratch, precision)
    manifest = build_site(model, folder, "float32" if precision == "int8-full" else precision, FLAGS.window_seconds,
                          block)
    if precision == "int8-full":
      full_integer_model(model, os.path.join(folder, "model.tflite"), song,
                         FLAGS.window_seconds or DEFAULT_WINDOW_SECONDS)
    sites[precision] = folder
    print(f"{precision}: site built in {time.perf_counter() - start:.0f} s (windows of "
          f"{manifest['window']['inputFrames']} -> {manifest['window']['outputFrames']} samples; model "
          f"{os.path.getsize(os.path.join(folder, 'model.tflite')) / 1e6:.1f} MB)", flush=True)
  flops = None
  if FLAGS.ceiling:
    flops = matmul_site(next(iter(sites.values())), os.path.join(scratch, "matmul"))
    sites["matmul"] = os.path.join(scratch, "matmul")

  channels = [_b64(song[:, c]) for c in range(song.shape[1])]
  settings = []  # (what, precision, threads, run() -> seconds, times)
  outputs = {}
  with sync_playwright() as playwright:
    chromium = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                          args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
    for precision, folder in sites.items():
      server = serve_in_background(folder, isolation=True)
      if precision == "matmul":
        settings += matmul_settings(chromium, server, folder)
        continue
      for threads in (FLAGS.threads if precision == "float32" else ["0"]):
        page = chromium.new_page()
        page.goto(f"http://127.0.0.1:{server.server_address[1]}/?threads={threads}")
        used = page.evaluate("window.waveUNet.ready.then((w) => w.threads)")
        page.evaluate("(channels) => {" + JS_CODEC + "window.benchSong = channels.map(dec); }", channels)

        def offline(page=page, precision=precision, keep=threads == "0"):
          result = page.evaluate("""async () => { const t = performance.now();
            const stems = await window.waveUNet.separateAtModelRate(window.benchSong);
            window.benchStems = stems; return (performance.now() - t) / 1000; }""")
          if keep:
            encoded = page.evaluate("() => {" + JS_CODEC + """
              return Object.fromEntries(Object.entries(window.benchStems).map(([s, c]) => [s, c.map(enc)])); }""")
            outputs[precision] = {s: np.stack([np.frombuffer(base64.b64decode(x), np.float32) for x in c], 1)
                                  for s, c in encoded.items()}
          return result

        def stream(page=page):
          return page.evaluate("""async (pushes) => { const s = window.waveUNet.stream(), B = s.blockFrames;
            await s.push(window.benchSong.map((c) => c.slice(0, B)));  // the reset and priming, untimed
            const t = performance.now();
            for (let k = 1; k <= pushes; k++) await s.push(window.benchSong.map((c) => c.slice(k * B, (k + 1) * B)));
            return (performance.now() - t) / 1000; }""", pushes)

        settings.append(("browser separate", precision, used, offline, []))
        if threads == "0":
          settings.append(("browser stream", precision, used, stream, []))

      separator = wut.Separator(os.path.join(folder, "model.tflite"))
      streamer = wut.StreamingSeparator(os.path.join(folder, "stream.tflite"))

      def native_offline(separator=separator):
        start = time.perf_counter()
        separator.separate_at_model_rate(song)
        return time.perf_counter() - start

      def native_stream(streamer=streamer):
        streamer.reset()
        streamer.push(song[:block])
        start = time.perf_counter()
        for k in range(1, pushes + 1):
          streamer.push(song[k * block:(k + 1) * block])
        return time.perf_counter() - start

      settings.append(("python separate", precision, default_threads(), native_offline, []))
      settings.append(("python stream", precision, default_threads(), native_stream, []))
      if precision == "float32" and "1" in FLAGS.threads and default_threads() != 1:
        alone = wut.Separator(TFLiteForwardPass(os.path.join(folder, "model.tflite"), num_threads=1))
        settings.append(("python separate", precision, 1, functools.partial(native_offline, alone), []))

    for *_, run, _ in settings:
      run()  # warm-up
    for _ in range(FLAGS.repeats):
      for *_, run, times in settings:
        times.append(run())
    chromium.close()
  print(f"load average {os.getloadavg()[0]:.1f} at the end\n")

  audio_seconds = {"separate": FLAGS.song_seconds, "stream": pushes * block / rate, "matmul": 1.0}
  speeds = {(what, precision, threads): audio_seconds[what.split()[1]] / statistics.median(times)
          for what, precision, threads, _, times in settings}
  rows = []
  print("| what | precision | threads | × real time | browser / Python | SNR vs browser float32 (dB) |")
  print("|---|---|---|---|---|---|")
  for (what, precision, threads), speed in speeds.items():
    if what.endswith("matmul"):
      continue
    native = speeds.get((f"python {what.split()[1]}", precision, threads),
                        speeds[(f"python {what.split()[1]}", precision, default_threads())])
    ratio = speed / native
    quality = None
    if what == "browser separate" and precision != "float32" and precision in outputs and "float32" in outputs:
      quality = min(_snr(outputs["float32"][s], outputs[precision][s]) for s in config.source_names)
    rows.append({"what": what, "precision": precision, "threads": threads, "realtime_factor": round(speed, 2),
                 "vs_python": round(ratio, 3),
                 "snr_vs_float32_db": None if quality is None else round(float(quality), 1)})
    print(f"| {what} | {precision} | {threads} | {speed:.2f} | {ratio:.2f} | "
          f"{'' if quality is None else f'{quality:.1f}'} |", flush=True)
  if flops:
    browser, native = speeds[("browser matmul", "float32", 1)], speeds[("python matmul", "float32", 1)]
    print(f"\nceiling: one 512x512 float32 matrix product, one thread: browser {browser * flops / 1e9:.1f} GFLOP/s, "
          f"Python LiteRT {native * flops / 1e9:.1f} GFLOP/s: {browser / native:.2f} of native")
    rows.append({"what": "matmul (ceiling)", "precision": "float32", "threads": 1,
                 "browser_gflops": round(browser * flops / 1e9, 1), "python_gflops": round(native * flops / 1e9, 1),
                 "vs_python": round(browser / native, 3)})
  if FLAGS.save:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import results
    print(results.save("browser", rows, preset=FLAGS.preset, song_seconds=FLAGS.song_seconds, block_frames=block,
                       window_input_frames=manifest["window"]["inputFrames"], repeats=FLAGS.repeats,
                       browser="Debian Chromium (headless), LiteRT.js " + manifest["litertjs"] + ", WebAssembly",
                       cpu=cpu(), statistic="median",
                       load_average=[round(start_load, 1), round(os.getloadavg()[0], 1)]))


if __name__ == "__main__":
  app.run(main)
