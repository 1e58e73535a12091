"""The in-browser site of ``wave-unet-export --web DIR``: a static page that separates with LiteRT.js.

The site holds the page and its scripts (``static/`` here), the model's fixed-window and streaming
``.tflite`` files, ``manifest.json`` (what the scripts need to tile a song and to stream: the window plan,
the block size, the output delay, the state layout) and LiteRT.js's runtime, copied from the npm package
installed beside this module (``npm ci`` in this folder; scripts/install.sh does it). Nothing is fetched:
building needs the package installed, and the page requests nothing from any other origin.

The site is built in a temporary folder beside ``DIR`` and renamed into place at the end, so a failed
build leaves nothing behind and an existing site is replaced whole (with ``overwrite``).
"""

import json
import os
import shutil
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
STATIC = os.path.join(HERE, "static")
LITERTJS_ENV = "WAVE_UNET_LITERTJS"  # another folder holding node_modules/@litertjs (default: beside this file)
# Output seconds per window of the fixed-window model: long enough that the model's context (about 3 s at
# 44.1 kHz, read again by every window) costs little (M5-HighSR in Chromium, benchmarks/browser.py: 1.85x real
# time with 10 s windows, 1.19x with 4 s), short enough for a browser's memory.
DEFAULT_WINDOW_SECONDS = 10.0
RUNTIME_FILES = ("litert_wasm_internal.js", "litert_wasm_internal.wasm", "litert_wasm_compat_internal.js",
                 "litert_wasm_compat_internal.wasm", "litert_wasm_threaded_internal.js",
                 "litert_wasm_threaded_internal.wasm")
_WASM_UTILS_IMPORT = 'from "@litertjs/wasm-utils"'


class WebError(ValueError):
  """A site that cannot be built, said in one line."""


def litertjs_folder() -> str:
  """``node_modules/@litertjs`` of the npm package beside this module (or under ``$WAVE_UNET_LITERTJS``);
  WebError when it is not installed."""
  root = os.environ.get(LITERTJS_ENV) or HERE
  folder = os.path.join(root, "node_modules", "@litertjs")
  if not os.path.isfile(os.path.join(folder, "core", "dist", "index.js")):
    raise WebError(f"--web: LiteRT.js is not installed in {root}: run `npm ci --prefix {HERE}` (scripts/install.sh "
                   f"does it)")
  return folder


def copy_runtime(destination: str):
  """Copies LiteRT.js into ``destination``: ``litert.js`` (the package's module, its one bare import pointed
  at ``wasm-utils.js`` beside it, so a page and a worker load it without an import map or a bundler) and
  ``wasm/`` (the WebAssembly builds it chooses from)."""
  folder = litertjs_folder()
  os.makedirs(os.path.join(destination, "wasm"))
  with open(os.path.join(folder, "core", "dist", "index.js")) as f:
    core = f.read()
  if core.count(_WASM_UTILS_IMPORT) != 1:
    raise WebError(f"--web: {folder}/core is a LiteRT.js this project does not know (install the version of "
                   f"{os.path.join(HERE, 'package.json')})")
  core = core.replace(_WASM_UTILS_IMPORT, 'from "./wasm-utils.js"').replace("//# sourceMappingURL=index.js.map", "")
  with open(os.path.join(destination, "litert.js"), "w") as f:
    f.write(core)
  with open(os.path.join(folder, "wasm-utils", "dist", "index.js")) as f:
    utils = f.read().replace("//# sourceMappingURL=index.js.map", "")
  with open(os.path.join(destination, "wasm-utils.js"), "w") as f:
    f.write(utils)
  for name in RUNTIME_FILES:
    shutil.copyfile(os.path.join(folder, "core", "wasm", name), os.path.join(destination, "wasm", name))
  with open(os.path.join(folder, "core", "package.json")) as f:
    return json.load(f)["version"]


def check_destination(directory: str, overwrite: bool):
  """A one-line WebError for a ``DIR`` that exists (without ``overwrite``), is a file, is a folder of other
  files (never replaced, even with ``overwrite``), or whose folder is missing."""
  if os.path.exists(directory) and not os.path.isdir(directory):
    raise WebError(f"--web={directory}: a file, not a folder")
  if os.path.exists(directory) and not overwrite:
    raise WebError(f"--web={directory}: already exists (pass --overwrite to replace it)")
  if os.path.isdir(directory) and os.listdir(directory) and \
      not os.path.isfile(os.path.join(directory, "manifest.json")):
    raise WebError(f"--web={directory}: a folder that is not a site of wave-unet-export --web; --overwrite replaces "
                   f"only such a site (or an empty folder)")
  if not os.path.isdir(os.path.dirname(os.path.abspath(directory))):
    raise WebError(f"--web={directory}: its folder does not exist")


def build_site(model, directory: str, precision: str = "float32", window_seconds: float = None,
               block_frames: int = None, overwrite: bool = False) -> dict:
  """Writes the site of ``model`` (a `WaveUNet` with context) into ``directory``; returns its manifest.

  Args:
    precision: the weights of both ``.tflite`` files: float32, float16 or int8 (dynamic-range, as
      `wave_unet_tf.precision`'s int8).
    window_seconds: output seconds per window of the fixed-window model (default `DEFAULT_WINDOW_SECONDS`).
    block_frames: samples per block of the streaming model at the model's rate (default 4096).
    overwrite: replace an existing ``directory``.
  """
  from wave_unet_tf import precision as precisions
  from wave_unet_tf.deploy import tflite, tflite_stream
  from wave_unet_tf.deploy.saved_model import fixed_window_plan
  from wave_unet_tf.separation.stream_graph import DEFAULT_BLOCK_FRAMES, StreamGraph
  from wave_unet_tf.sizes import model_context

  precision = precisions.check(precision)
  check_destination(directory, overwrite)
  litertjs_folder()  # said before minutes of conversion
  config = model.wave_unet_config
  if not config.context:
    raise WebError("--web: the browser runs context models (M3 onwards: valid convolutions); this one has "
                   "context=False")
  block_frames = int(block_frames or DEFAULT_BLOCK_FRAMES)
  window_seconds = float(window_seconds or DEFAULT_WINDOW_SECONDS)
  try:
    graph = StreamGraph(model, block_frames)
  except ValueError as e:
    raise WebError(f"--block_frames={block_frames}: {e}") from None
  plan = fixed_window_plan(config, window_seconds)
  quantize = precisions.QUANTIZE.get(precision, "none")
  directory = os.path.abspath(directory)
  parent = os.path.dirname(directory)
  scratch = tempfile.mkdtemp(prefix=f".{os.path.basename(directory)}-", dir=parent)
  try:
    site = os.path.join(scratch, "site")
    shutil.copytree(STATIC, site)
    version = copy_runtime(os.path.join(site, "litert"))
    tflite.export_tflite(model, os.path.join(site, "model.tflite"), quantize, window_seconds)
    tflite_stream.export_tflite_stream(model, os.path.join(site, "stream.tflite"), block_frames, quantize)
    before, after = model_context(config)
    manifest = {
        "format": 1,
        "sources": list(config.source_names),
        "sampleRate": config.sample_rate,
        "channels": config.num_channels,
        "precision": precision,
        "litertjs": version,
        "window": {"model": "model.tflite", "inputFrames": plan.input_frames, "outputFrames": plan.output_frames,
                   "stride": plan.stride, "contextBefore": plan.context_before, "keepOffset": plan.keep_offset},
        "stream": {"model": "stream.tflite", "blockFrames": block_frames, "outputDelay": graph.output_delay,
                   "contextBefore": before,
                   "latencyFrames": stream_latency(graph.output_delay, before, block_frames),
                   "states": [[name, frames, features] for name, (frames, features)
                              in zip(graph.state_names(), graph.state_specs.values())]},
        "contextAfter": after,
    }
    with open(os.path.join(site, "manifest.json"), "w") as f:
      json.dump(manifest, f, indent=1)
    if os.path.exists(directory):  # replaced whole: the old site goes once the new one is complete
      old = os.path.join(scratch, "old")
      os.rename(directory, old)
    os.rename(site, directory)
  finally:
    shutil.rmtree(scratch, ignore_errors=True)
  return manifest


def stream_latency(output_delay: int, context_before: int, block_frames: int) -> int:
  """The stream's latency in samples when every push brings one whole block: song sample ``t - latency``
  comes out with the block that brings sample ``t``.

  The stream is fed the song after ``context_before`` zeros; output stream frame ``s`` is song sample ``s -
  output_delay``. After ``n`` song samples (a whole number of blocks) the stream has run ``context_before +
  n - (context_before % block_frames)`` frames (the zeros' last partial block waits with the song), so the
  newest song sample out is ``n - 1 - latency`` with this latency. (`StreamingSeparator` takes chunks of any
  size, so it states the worst case, ``block_frames - 1`` more.)"""
  return output_delay - context_before + context_before % block_frames
