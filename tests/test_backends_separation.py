"""Models, separation (offline and streamed), evaluation, the app, Beam and the TFLite precisions under the JAX and
PyTorch backends give TensorFlow's results: each check runs in a child Python under that backend
(`backends.run_python`), grouped so that each backend starts few; tiny models, one full preset."""

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile

import wave_unet_tf as wut
from wave_unet_tf.config import Config
from wave_unet_tf.model.saving import save_model

from backends import OTHER_BACKENDS, environment, run_python, skip_unless_installed
from conftest import ORIGINAL_MODELS, ORIGINAL_TF1, PROJECT_ROOT, assert_quiet
from released_models import RELEASED, Server, write_original_checkpoint

TOLERANCE = 1e-5
SONG_RATE = 22050  # resampled to the tiny model's 16 kHz and back
WINDOW_SECONDS = 0.25  # several windows per song


def tiny_model():
  config = wut.get_preset("M5").replace(num_layers=4, num_initial_filters=6, sample_rate=16000)
  return wut.build_model(config)


def song(seconds, rate=SONG_RATE, channels=2, seed=0):
  return np.random.default_rng(seed).uniform(-0.4, 0.4, (int(seconds * rate), channels)).astype(np.float32)


STREAM_BLOCK = 512  # samples per streaming step at the model's rate


def stream(separator, waveform, chunk=700):
  """``waveform`` pushed through a `StreamingSeparator` in chunks, then flushed: ``{source: samples}``."""
  parts = [separator.push(waveform[i:i + chunk]) for i in range(0, len(waveform), chunk)] + [separator.flush()]
  return {source: np.concatenate([p[source] for p in parts]) for source in parts[0]}


@pytest.fixture(scope="module")
def work(tmp_path_factory):
  """The models of every source and TensorFlow's results for them, written by this (TensorFlow) process."""
  root = tmp_path_factory.mktemp("backends")
  model = tiny_model()
  save_model(model, str(root / "tiny.keras"))
  (root / "run").mkdir()
  save_model(model, str(root / "run" / "best.keras"))
  (root / "www").mkdir()
  save_model(model, str(root / "www" / "tiny.keras"))
  frames = wut.io_sizes(model.wave_unet_config, 2048)[0]
  mix = np.random.default_rng(1).uniform(-0.5, 0.5, (2, frames, 2)).astype(np.float32)
  separator = wut.Separator(model, window_seconds=WINDOW_SECONDS)
  stems = separator.separate(song(1.3), SONG_RATE)
  soundfile.write(str(root / "song.wav"), song(1.3), SONG_RATE, subtype="FLOAT")
  # A pretrained name from a local folder of the release: converted by the first backend that asks for it.
  name, step, manifest = RELEASED["M5-HighSR"]
  prefix = write_original_checkpoint(root / "repo" / "checkpoints" / name, name, step, manifest)
  released = wut.convert_tf1_checkpoint(prefix, "M5-HighSR")
  named = wut.Separator(released).separate(song(0.3, 44100, seed=2), 44100)
  streamed = stream(wut.StreamingSeparator(model, block_frames=STREAM_BLOCK), song(0.5, 16000, seed=3))
  reference = {"mix": mix, **{f"stream/{k}": v for k, v in streamed.items()}, **{f"forward/{k}": v.numpy() for k, v in model(mix, training=False).items()},
               **{f"stems/{k}": v for k, v in stems.items()}, **{f"named/{k}": v for k, v in named.items()}}
  np.savez(root / "reference.npz", **reference)
  return root


CHILD = """
import json, os, pathlib, sys
import keras, numpy as np
import wave_unet_tf as wut
from wave_unet_tf.config import Config

work, original = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
reference = np.load(work / "reference.npz")
out = {}

def forward(model, mix):  # the Separator's compiled forward pass, over the plain model
  from wave_unet_tf.separation.forward import KerasForwardPass
  return KerasForwardPass(model, polyphase=False).forward(mix)

for name in sys.argv[4].split(","):  # the original's checkpoints, converted into this backend's model
  config = Config.from_dict(json.loads((original / name / "config.json").read_text())["config"])
  model = wut.convert_tf1_checkpoint(str(original / name), config)
  expected = np.load(original / name / "reference.npz")
  for source, value in forward(model, expected["input"]).items():
    out[f"tf1/{name}/{source}"] = value
for label, source in (("keras", work / "tiny.keras"), ("run", work / "run"), ("url", sys.argv[3])):
  model = wut.load_model(str(source))
  for k, v in forward(model, reference["mix"]).items():
    out[f"{label}/{k}"] = v
stems = wut.Separator(str(work / "tiny.keras"), window_seconds=%(window)r).separate(
    np.asarray(__import__("soundfile").read(str(work / "song.wav"), dtype="float32")[0]), %(rate)d)
out.update({f"stems/{k}": v for k, v in stems.items()})
streaming = wut.StreamingSeparator(str(work / "tiny.keras"), block_frames=%(block)d)  # real time, at the model's rate
waveform = np.random.default_rng(3).uniform(-0.4, 0.4, (8000, 2)).astype(np.float32)
parts = [streaming.push(waveform[i:i + 700]) for i in range(0, len(waveform), 700)] + [streaming.flush()]
out.update({f"stream/{k}": np.concatenate([p[k] for p in parts]) for k in parts[0]})
if keras.backend.backend() == "torch":  # a full model: seconds to build on JAX (its initializers compile)
  rng = np.random.default_rng(2)
  named = wut.Separator("M5-HighSR").separate(rng.uniform(-0.4, 0.4, (int(0.3 * 44100), 2)).astype(np.float32), 44100)
  out.update({f"named/{k}": v for k, v in named.items()})
model.save(str(work / f"{keras.backend.backend()}.keras"))  # the tiny model, saved under this backend
np.savez(work / f"{keras.backend.backend()}.npz", **out)
print(keras.backend.backend())
""" % {"window": WINDOW_SECONDS, "rate": SONG_RATE, "block": STREAM_BLOCK}


@pytest.mark.slow
@pytest.mark.parametrize("backend", OTHER_BACKENDS)
def test_every_model_source_loads_and_separates_as_on_tensorflow(backend, work):
  server = Server(work / "www")
  try:
    result = run_python(backend, CHILD, work, ORIGINAL_TF1, f"{server.url}/tiny.keras", ",".join(ORIGINAL_MODELS),
                        WAVE_UNET_MODEL_REPO=str(work / "repo"))
  finally:
    server.close()
  assert result.stdout.strip().splitlines()[-1] == backend
  got, reference = np.load(work / f"{backend}.npz"), np.load(work / "reference.npz")
  for name in ORIGINAL_MODELS:  # the original graph's outputs, as tests/test_conversion.py checks on TensorFlow
    expected = np.load(ORIGINAL_TF1 / name / "reference.npz")
    config = Config.from_dict(json.loads((ORIGINAL_TF1 / name / "config.json").read_text())["config"])
    for source in config.source_names:
      np.testing.assert_allclose(got[f"tf1/{name}/{source}"], expected[source], atol=TOLERANCE, rtol=0,
                                 err_msg=f"{name} {source}")
  for key in reference.files:
    if key == "mix":
      continue
    kind, source = key.split("/")
    if kind == "named" and backend != "torch":
      continue
    labels = ("keras", "run", "url") if kind == "forward" else (kind,)
    for label in labels:
      np.testing.assert_allclose(got[f"{label}/{source}"], reference[key], atol=TOLERANCE, rtol=0,
                                 err_msg=f"{label} {source}")
  # ... and the model this backend saved loads on TensorFlow with the same outputs.
  saved = wut.load_model(str(work / f"{backend}.keras"))
  for source, value in saved(reference["mix"], training=False).items():
    np.testing.assert_allclose(value.numpy(), reference[f"forward/{source}"], atol=TOLERANCE, rtol=0)


def command(backend, module, *args):
  skip_unless_installed(backend)
  return subprocess.run([sys.executable, "-m", f"wave_unet_tf.{module}", *map(str, args)], cwd=PROJECT_ROOT,
                        env=environment(backend), capture_output=True, text=True, timeout=600)


def read(path):
  return soundfile.read(str(path), dtype="float32", always_2d=True)[0]


@pytest.mark.slow
@pytest.mark.parametrize("backend", OTHER_BACKENDS)
def test_separate_command_writes_tensorflows_stems(backend, work, tmp_path):
  result = command(backend, "separate", "--model", work / "tiny.keras", "--window_seconds", WINDOW_SECONDS,
                   "--bit_depth", "32", "--two_stems", "vocals", "--output_dir", tmp_path, "--noprogress",
                   work / "song.wav")
  assert result.returncode == 0, result.stderr
  assert_quiet(result.stdout, result.stderr)
  reference = np.load(work / "reference.npz")
  np.testing.assert_allclose(read(tmp_path / "song" / "vocals.wav"), reference["stems/vocals"], atol=TOLERANCE, rtol=0)
  np.testing.assert_allclose(read(tmp_path / "song" / "no_vocals.wav"), reference["stems/accompaniment"],
                             atol=TOLERANCE, rtol=0)


@pytest.mark.slow
def test_evaluate_command_scores_as_on_tensorflow(work, tmp_path):
  from test_evaluation import write_hq_folder
  from wave_unet_tf.evaluation import POOLED, evaluate
  root = write_hq_folder(tmp_path / "musdb", names=("Song A",), seconds=1.0)
  result = command("torch", "evaluate", "--model", work / "tiny.keras", "--musdb_root", root, "--is_wav",
                   "--output_dir", tmp_path / "torch", "--window_seconds", WINDOW_SECONDS)
  assert result.returncode == 0, result.stderr
  assert_quiet(result.stdout, result.stderr)
  expected = evaluate(wut.Separator(str(work / "tiny.keras"), window_seconds=WINDOW_SECONDS), str(root),
                      is_wav=True, output_dir=str(tmp_path / "tensorflow"), progress=False, log=lambda *_: None)
  got = json.loads((tmp_path / "torch" / "summary.json").read_text())
  for source in ("accompaniment", "vocals"):
    for metric in ("SDR", "SIR", "SAR", "ISR"):
      assert got["methods"]["model"][source][metric][POOLED] == pytest.approx(
          expected["methods"]["model"][source][metric][POOLED], abs=1e-3)


APP_AND_BEAM = """
import pathlib, sys
import numpy as np, soundfile
import wave_unet_tf as wut
work, run = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
separator = wut.Separator(str(work / "tiny.keras"), window_seconds=%(window)r)
separator.separate(soundfile.read(str(work / "song.wav"), dtype="float32")[0], %(rate)d)
assert "tensorflow" not in sys.modules, "separating on JAX imported TensorFlow"  # a GPU machine may lack it
from wave_unet_tf import app
from wave_unet_tf.separation import outputs
songs = list(app.separate_uploads(separator, [str(work / "song.wav")], str(run), outputs.OutputOptions(bit_depth=32)))
print(songs[0].error or songs[0].stems["vocals"])
""" % {"window": WINDOW_SECONDS, "rate": SONG_RATE}


@pytest.mark.slow
def test_app_and_beam_separate_on_jax_and_separating_imports_no_tensorflow(work, tmp_path):
  pytest.importorskip("apache_beam")
  reference = np.load(work / "reference.npz")
  result = run_python("jax", APP_AND_BEAM, work, tmp_path / "app")
  np.testing.assert_allclose(read(result.stdout.strip().splitlines()[-1]), reference["stems/vocals"],
                             atol=TOLERANCE, rtol=0)
  songs = tmp_path / "songs"
  songs.mkdir()
  (songs / "song.wav").write_bytes((work / "song.wav").read_bytes())
  result = command("jax", "separate_beam", f"--input={songs}/*", f"--output_dir={tmp_path / 'beam'}",
                   "--model", work / "tiny.keras", "--window_seconds", WINDOW_SECONDS, "--bit_depth", "32")
  assert result.returncode == 0, result.stderr
  np.testing.assert_allclose(read(tmp_path / "beam" / "song" / "vocals.wav"), reference["stems/vocals"],
                             atol=TOLERANCE, rtol=0)


TENSORFLOW_ONLY = """
import sys
sys.modules["ai_edge_litert"] = None  # a plain install without LiteRT: TensorFlow's interpreter, which warns
import numpy as np
import wave_unet_tf as wut
model, song = sys.argv[1], np.load(sys.argv[2])["song"]
stems = wut.Separator(model, window_seconds=0.25, precision="int8").separate(song, 16000)
np.save(sys.argv[3], stems["vocals"])
"""


@pytest.mark.slow
def test_precisions_and_exports_switch_to_tensorflow_quietly(work, tmp_path):
  model = str(work / "tiny.keras")
  np.savez(tmp_path / "song.npz", song=song(0.6, 16000))
  for backend in ("tensorflow", "jax"):  # converted in process, and in a TensorFlow child
    result = run_python(backend, TENSORFLOW_ONLY, model, tmp_path / "song.npz", tmp_path / f"{backend}.npy",
                        XDG_CACHE_HOME=str(tmp_path / backend))
    # Only the package's own line: no deprecation warning, no TensorFlow or LiteRT start-up lines.
    assert [line for line in result.stderr.splitlines() if "converting the model once" not in line] == [], backend
  np.testing.assert_allclose(np.load(tmp_path / "jax.npy"), np.load(tmp_path / "tensorflow.npy"), atol=TOLERANCE,
                             rtol=0)
  exported = command("jax", "export", "--model", model, "--tflite", tmp_path / "tiny.tflite")
  assert exported.returncode == 0 and (tmp_path / "tiny.tflite").exists(), exported.stderr
