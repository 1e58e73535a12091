"""--precision float32|float16|int8: every entry point (Separator, StreamingSeparator, the separate command
offline and live, the evaluate command), the outputs' distance from float32 on the original code's fixture
checkpoints, the model cache (one conversion, reused; a damaged entry rebuilt) and the one-line refusals."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import soundfile

import wave_unet_tf as wut
from wave_unet_tf import model_cache, precision
from wave_unet_tf.config import Config
from wave_unet_tf.separation.streaming import StreamingSeparator

from conftest import ORIGINAL_TF1, PROJECT_ROOT, assert_quiet

# Least SNR (dB) of each precision's outputs against float32's on the fixture checkpoints (measured: float16
# 70-74 dB, int8 41-53 dB; float32 is the in-process model itself, exact).
LEAST_SNR = {"float16": 60.0, "int8": 35.0}
WINDOW_SECONDS = 1.0  # the tests' Separator and commands share these windows, so they share cache entries
BLOCK_FRAMES = 64


def snr(reference, estimate):
  noise = np.sum((estimate - reference) ** 2)
  return np.inf if noise == 0 else 10 * np.log10(np.sum(reference ** 2) / noise)


def checkpoint_model(name, folder):
  """The original code's fixture checkpoint ``name`` converted and saved as ``folder/name.keras``."""
  from wave_unet_tf.model.saving import save_model
  config = Config.from_dict(json.loads((ORIGINAL_TF1 / name / "config.json").read_text())["config"])
  model = wut.convert_tf1_checkpoint(str(ORIGINAL_TF1 / name), config)
  return model, save_model(model, str(folder / f"{name}.keras"))


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
  folder = tmp_path_factory.mktemp("precision")
  return {name: checkpoint_model(name, folder) for name in ("tiny_m5", "tiny_m6")}


def song(model, seconds=1.5, seed=0):
  rate = model.wave_unet_config.sample_rate
  return np.random.default_rng(seed).uniform(-0.5, 0.5, (int(seconds * rate), 2)).astype(np.float32), rate


def cache_entries(key):
  return sorted(pathlib.Path(model_cache.cache_dir()).glob(f"lite-*-{key}.tflite"))


@pytest.mark.parametrize("name", ["tiny_m5", "tiny_m6"])
@pytest.mark.parametrize("level", ["float32", "float16", "int8"])
def test_separator_at_each_precision_is_within_its_snr_of_float32(fixtures, name, level):
  model, path = fixtures[name]
  mix, rate = song(model)
  reference = wut.Separator(model, window_seconds=WINDOW_SECONDS, jit_compile=False).separate(mix, rate)
  separator = wut.Separator(path, window_seconds=WINDOW_SECONDS, precision=level)
  out = separator.separate(mix, rate)
  assert separator.precision == level
  for source in model.wave_unet_config.source_names:
    assert out[source].shape == mix.shape
    if level == "float32":  # the model as it is
      np.testing.assert_allclose(out[source], reference[source], atol=1e-5)
    else:
      assert snr(reference[source], out[source]) >= LEAST_SNR[level], source


@pytest.mark.parametrize("level", ["float32", "float16", "int8"])
def test_stream_at_each_precision_is_within_its_snr_of_float32_with_the_same_latency(fixtures, level):
  model, path = fixtures["tiny_m5"]
  mix, rate = song(model, seconds=1.0, seed=1)
  reference = StreamingSeparator(model, block_frames=BLOCK_FRAMES, jit_compile=False)
  stream = StreamingSeparator(path, block_frames=BLOCK_FRAMES, precision=level)
  assert stream.latency_frames == reference.latency_frames

  def run(s):
    parts = [s.push(mix[i:i + 300]) for i in range(0, len(mix), 300)] + [s.flush()]
    return {k: np.concatenate([p[k] for p in parts]) for k in s.source_names}

  expected, actual = run(reference), run(stream)
  for source, value in expected.items():
    assert actual[source].shape == mix.shape
    if level == "float32":
      np.testing.assert_allclose(actual[source], value, atol=1e-5)
    else:
      assert snr(value, actual[source]) >= LEAST_SNR[level], source


def test_conversion_is_cached_reused_and_a_damaged_entry_rebuilt(fixtures, capsys):
  model, path = fixtures["tiny_m6"]
  mix, rate = song(model, seconds=0.5, seed=2)
  first = wut.Separator(path, window_seconds=WINDOW_SECONDS, precision="int8").separate(mix, rate)
  capsys.readouterr()
  [entry] = [e for e in cache_entries(f"int8-w*") if model_cache.model_digest(model)[:32] in e.name]
  stamp = entry.stat().st_mtime_ns
  again = wut.Separator(path, window_seconds=WINDOW_SECONDS, precision="int8").separate(mix, rate)
  assert "converting" not in capsys.readouterr().err and entry.stat().st_mtime_ns == stamp  # no reconversion
  for source in first:
    np.testing.assert_array_equal(again[source], first[source])

  entry.write_bytes(entry.read_bytes()[:1000])  # damaged on disk
  rebuilt = wut.Separator(path, window_seconds=WINDOW_SECONDS, precision="int8").separate(mix, rate)
  said = capsys.readouterr().err
  assert "damaged cache entry" in said and str(entry) in said
  for source in first:
    np.testing.assert_array_equal(rebuilt[source], first[source])


def test_a_wrong_precision_name_is_one_line_naming_it(fixtures):
  model, _ = fixtures["tiny_m5"]
  for make in (wut.Separator, StreamingSeparator):
    with pytest.raises(ValueError, match=r"^--precision=int4: choose float32, float16, int8$"):
      make(model, precision="int4")
  assert precision.check("INT8") == "int8" and precision.check(None) == "float32"


def test_what_cannot_take_a_precision_is_refused_in_one_line(fixtures, tmp_path):
  model, path = fixtures["tiny_m5"]
  wut.Separator(path, window_seconds=WINDOW_SECONDS, precision="int8")
  quantized = str(cache_entries("int8-w*")[0])
  with pytest.raises(ValueError, match=r"already quantized \(int8 weights\); --precision=float16") as error:
    wut.Separator(quantized, precision="float16")
  assert "\n" not in str(error.value)
  with pytest.raises(ValueError, match=r"already quantized"):
    StreamingSeparator(quantized, precision="int8")
  same, _ = checkpoint_model("tiny_m1_same", tmp_path)
  before = set(pathlib.Path(model_cache.cache_dir()).iterdir())
  with pytest.raises(ValueError, match=r"same-padding model .* not shift-exact"):
    StreamingSeparator(same, block_frames=BLOCK_FRAMES, precision="int8")
  assert set(pathlib.Path(model_cache.cache_dir()).iterdir()) == before  # refused before converting


def run_command(module, *args, stdin=None):
  env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as a user runs it
  return subprocess.run([sys.executable, "-m", f"wave_unet_tf.{module}", *map(str, args)], cwd=PROJECT_ROOT,
                        capture_output=True, env=env, stdin=stdin, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("level", ["float16", "int8"])
def test_separate_command_offline_and_live_at_a_precision(fixtures, tmp_path, level):
  model, path = fixtures["tiny_m5"]
  mix, rate = song(model, seconds=1.0, seed=3)
  soundfile.write(str(tmp_path / "song.wav"), mix, rate, subtype="FLOAT")
  offline = run_command("separate", f"--model={path}", f"--precision={level}", f"--window_seconds={WINDOW_SECONDS}",
                        f"--output_dir={tmp_path / 'out'}", "--noprogress", tmp_path / "song.wav")
  assert offline.returncode == 0, offline.stderr.decode()[-2000:]
  assert_quiet(offline.stdout.decode(), offline.stderr.decode())
  assert "INFO: Created TensorFlow Lite" not in offline.stderr.decode()  # LiteRT's line, filtered
  expected = wut.Separator(path, window_seconds=WINDOW_SECONDS, precision=level).separate(mix, rate)
  written, _ = soundfile.read(str(tmp_path / "out" / "song" / "vocals.wav"), dtype="float32")
  np.testing.assert_allclose(written, expected["vocals"], atol=1e-6)

  with open(tmp_path / "song.wav", "rb") as stdin:
    live = run_command("separate", f"--model={path}", f"--precision={level}", f"--block_frames={BLOCK_FRAMES}",
                       "--stdout=vocals", "-", stdin=stdin)
  assert live.returncode == 0, live.stderr.decode()[-2000:]
  (tmp_path / "live.wav").write_bytes(live.stdout)
  streamed, _ = soundfile.read(str(tmp_path / "live.wav"), dtype="float32")
  stream = StreamingSeparator(path, block_frames=BLOCK_FRAMES, precision=level, channels=2)
  expected = np.concatenate([stream.push(mix)["vocals"], stream.flush()["vocals"]])
  np.testing.assert_allclose(streamed, expected, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("level", ["float16", "int8"])
def test_evaluate_command_at_a_precision(fixtures, tmp_path, level):
  from wave_unet_tf.evaluation import POOLED, evaluate
  from test_evaluation import write_hq_folder
  _, path = fixtures["tiny_m5"]
  root = write_hq_folder(tmp_path / "hq", names=("Song A",))
  result = run_command("evaluate", f"--model={path}", f"--musdb_root={root}", "--is_wav", f"--precision={level}",
                       f"--window_seconds={WINDOW_SECONDS}", f"--output_dir={tmp_path / 'eval'}")
  assert result.returncode == 0, result.stderr.decode()[-2000:]
  assert_quiet(result.stdout.decode(), result.stderr.decode())
  scored = json.loads((tmp_path / "eval" / "summary.json").read_text())["methods"]["model"]
  reference = evaluate(path, str(root), is_wav=True, output_dir=str(tmp_path / "float32"), progress=False,
                       log=lambda *_: None, window_seconds=WINDOW_SECONDS)["methods"]["model"]
  for source in ("accompaniment", "vocals"):
    assert scored[source]["SDR"][POOLED] == pytest.approx(reference[source]["SDR"][POOLED], abs=0.05)


def test_every_command_that_separates_declares_the_same_flag():
  from absl import flags
  values = flags.FlagValues()
  precision.define_flag(values)
  values(["prog", "--precision=int8"])
  assert values.precision == "int8" and values["precision"].default == "float32"
  with pytest.raises(flags.IllegalFlagValueError):
    values(["prog", "--precision=int4"])


def test_tflite_stream_with_host_delay_lines_equals_the_in_process_stream(tmp_path):
  """The precision streams' TFLite step leaves the long delay lines to the runner (12 levels have them; the
  tiny models above have none): at float32 weights it streams what the in-process step streams."""
  from wave_unet_tf.deploy.tflite_stream import TFLiteStreamStep, export_tflite_stream
  model, _ = checkpoint_model("deep_m5_thin", tmp_path)
  path = export_tflite_stream(model, str(tmp_path / "stream.tflite"), 4096, host_delays=True)
  step = TFLiteStreamStep(path)
  assert len(step._lines) == 5
  mix, _ = song(model, seconds=1.0, seed=4)
  outputs = []
  for stream in (StreamingSeparator(model, block_frames=4096, jit_compile=False), StreamingSeparator(step)):
    parts = [stream.push(mix[i:i + 1000]) for i in range(0, len(mix), 1000)] + [stream.flush()]
    outputs.append({k: np.concatenate([p[k] for p in parts]) for k in stream.source_names})
  for source, value in outputs[0].items():
    np.testing.assert_allclose(outputs[1][source], value, atol=1e-4)
