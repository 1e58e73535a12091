"""Model sources: the original's released TF1 checkpoints (preset recognised, converted once, cached), models
served over HTTP (downloaded once, checksum verified) and hf:// through Keras."""

import hashlib
import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import soundfile
import tensorflow as tf

import wave_unet_tf as wut
from wave_unet_tf import model_cache
from wave_unet_tf.conversion import tf1_checkpoint
from wave_unet_tf.model.saving import NotAModelError, save_model
from wave_unet_tf.model_sources import load_model

from conftest import ORIGINAL_TF1
from released_models import Server  # an HTTP server on 127.0.0.1 serving a folder

# preset -> (the original's released name, the fixture manifest of its variables)
RELEASED = {"M5-HighSR": ("full_44KHz", "M5_full"), "M4": ("baseline_stereo", "M4_baseline_stereo"),
            "M6": ("full_multi_instrument", "M6_full_multi_instrument")}


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
  """Each test starts with an empty model cache."""
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
  return tmp_path / "cache" / "wave_unet_tf" / "models"


def write_tf1_checkpoint(prefix, variables, seed=0):
  """A TF1-format checkpoint holding ``variables`` (``[[name, shape], ...]``, as the original's manifests)
  with random values, written by the same op TF1's Saver used."""
  rng = np.random.default_rng(seed)
  names = [name for name, _ in variables]
  tensors = [tf.constant(rng.normal(0, 0.05, shape).astype(np.float32) if shape else np.float32(4242))
             for _, shape in variables]
  os.makedirs(os.path.dirname(prefix), exist_ok=True)
  tf.raw_ops.SaveV2(prefix=str(prefix), tensor_names=names, shape_and_slices=[""] * len(names), tensors=tensors)
  return {name: t.numpy() for name, t in zip(names, tensors)}


def released_checkpoint(root, preset, step=236118, folder=None):
  """``root/checkpoints/<released name>/<released name>-<step>.*`` with the preset's variables (and the
  optimizer's, as released)."""
  released, manifest = RELEASED[preset]
  variables = json.loads((ORIGINAL_TF1 / f"{manifest}.variables.json").read_text())["variables"]
  directory = root / "checkpoints" / (folder or released)
  values = write_tf1_checkpoint(directory / f"{released}-{step}", variables)
  return directory, values


def _assert_weights(model, values, preset):
  for original, _, keras_name in tf1_checkpoint.original_variables(wut.get_preset(preset)):
    weight = next(w for w in model.weights if w.path == keras_name)
    np.testing.assert_array_equal(weight.numpy(), values[original], err_msg=keras_name)


@pytest.mark.parametrize("preset", ["M5-HighSR", pytest.param("M4", marks=pytest.mark.slow),
                                    pytest.param("M6", marks=pytest.mark.slow)])
def test_released_checkpoint_folder_is_recognised_converted_once_and_cached(preset, tmp_path, own_cache, monkeypatch):
  folder, values = released_checkpoint(tmp_path, preset)
  model = load_model(str(folder))
  assert model.wave_unet_config == wut.get_preset(preset)  # M5-HighSR (44.1 kHz) from the folder's name
  _assert_weights(model, values, preset)
  cached = [f for f in os.listdir(own_cache) if f.endswith(".keras")]
  assert len(cached) == 1 and preset in cached[0], cached

  def no_conversion(*args, **kwargs):
    raise AssertionError("converted again")

  monkeypatch.setattr(tf1_checkpoint, "convert_tf1_checkpoint", no_conversion)
  again = load_model(str(folder / f"{RELEASED[preset][0]}-236118"))  # the prefix: the same content
  _assert_weights(again, values, preset)
  assert [f for f in os.listdir(own_cache) if not f.startswith(".")] == cached


def test_m5_variables_without_a_released_name_default_to_22_khz_and_say_so(tmp_path, capsys):
  folder, _ = released_checkpoint(tmp_path, "M5-HighSR", folder="my_model")
  model = load_model(str(folder))
  assert model.wave_unet_config == wut.get_preset("M5")
  notice = capsys.readouterr().err
  assert "M5 (22050 Hz)" in notice and "M5-HighSR (44100 Hz)" in notice and "full_44KHz" in notice


def test_same_content_under_another_name_is_another_preset_but_one_conversion_each(tmp_path, own_cache):
  folder, _ = released_checkpoint(tmp_path, "M5-HighSR")
  other = tmp_path / "elsewhere" / "full"  # the original's M5 name
  shutil.copytree(folder, other)
  assert load_model(str(folder)).wave_unet_config.sample_rate == 44100
  assert load_model(str(other)).wave_unet_config.sample_rate == 22050
  assert len([f for f in os.listdir(own_cache) if f.endswith(".keras")]) == 2


@pytest.mark.parametrize("name, closest, differs", [
    ("deep_m5_thin", "M5", "(num_initial_filters 2 where the preset has 24)"),
    ("tiny_m6", "M6", "(num_initial_filters 6 where the preset has 24, num_layers 3 where the preset has 12)")])
def test_checkpoint_of_no_preset_names_the_closest_and_what_differs(name, closest, differs, tmp_path, own_cache):
  folder = tmp_path / "checkpoints" / name
  shutil.copytree(ORIGINAL_TF1 / name, folder)
  with pytest.raises(tf1_checkpoint.CheckpointMismatchError) as error:
    load_model(str(folder))
  message = str(error.value)
  assert message.startswith(f"{folder}: ") and f"the closest is {closest} {differs}" in message
  assert not own_cache.exists() or not os.listdir(own_cache)


def test_a_checkpoint_of_other_variables_is_not_taken_for_the_original(tmp_path):
  write_tf1_checkpoint(tmp_path / "run" / "ckpt-1", [["model/layer/kernel", [3, 2]]])
  with pytest.raises(ValueError, match="run: a checkpoint without the original Wave-U-Net's variables"):
    load_model(str(tmp_path / "run"))


def test_an_unreadable_checkpoint_is_named(tmp_path):
  (tmp_path / "full_44KHz").mkdir()
  (tmp_path / "full_44KHz" / "full_44KHz-1.index").write_bytes(b"not an index")
  with pytest.raises(ValueError, match="full_44KHz-1: unreadable TF1 checkpoint"):
    load_model(str(tmp_path / "full_44KHz"))


@pytest.mark.slow  # the real command, end to end
def test_separate_command_and_separator_take_the_released_folder(tmp_path):
  folder, values = released_checkpoint(tmp_path, "M5-HighSR")
  song = np.random.default_rng(5).uniform(-0.3, 0.3, (22050, 2)).astype(np.float32)
  soundfile.write(tmp_path / "song.wav", song, 44100)
  result = subprocess.run([sys.executable, "-m", "wave_unet_tf.separate", f"--model={folder}",
                           f"--output_dir={tmp_path / 'out'}", str(tmp_path / "song.wav")],
                          capture_output=True, text=True)
  assert result.returncode == 0, result.stderr
  assert "converting it once" in result.stderr
  vocals, rate = soundfile.read(tmp_path / "out" / "song" / "vocals.wav", dtype="float32")
  expected = wut.Separator(tf1_checkpoint.convert_tf1_checkpoint(str(folder), "M5-HighSR")).separate(song, 44100)
  assert rate == 44100
  np.testing.assert_allclose(vocals, expected["vocals"], atol=1e-4)
  # In Python, from the cache the command filled.
  separator = wut.Separator(str(folder))
  assert separator.forward_pass.config.sample_rate == 44100
  np.testing.assert_allclose(separator.separate(song, 44100)["vocals"], expected["vocals"], atol=1e-5)


@pytest.mark.slow  # the real command, end to end
def test_separate_command_names_the_closest_preset_in_one_line(tmp_path):
  folder = tmp_path / "checkpoints" / "deep_m5_thin"
  shutil.copytree(ORIGINAL_TF1 / "deep_m5_thin", folder)
  soundfile.write(tmp_path / "song.wav", np.zeros((4410, 2), np.float32), 44100)
  result = subprocess.run([sys.executable, "-m", "wave_unet_tf.separate", f"--model={folder}",
                           f"--output_dir={tmp_path / 'out'}", str(tmp_path / "song.wav")],
                          capture_output=True, text=True)
  assert result.returncode != 0 and "Traceback" not in result.stderr
  assert "match no preset; the closest is M5" in result.stderr.strip().splitlines()[-1]


@pytest.fixture
def served_model(tmp_path):
  keras.utils.set_random_seed(3)
  model = wut.build_model(wut.get_preset("M5").replace(num_layers=3, num_initial_filters=4, num_frames=600))
  (tmp_path / "www").mkdir()
  save_model(model, str(tmp_path / "www" / "small.keras"))
  (tmp_path / "www" / "junk.keras").write_text("<html>an error page</html>")
  server = Server(tmp_path / "www")
  yield model, server, hashlib.sha256((tmp_path / "www" / "small.keras").read_bytes()).hexdigest()
  server.close()


def test_url_is_downloaded_once_with_progress_and_verified(served_model, own_cache, capfd):
  model, server, digest = served_model
  url = f"{server.url}/small.keras#sha256={digest}"
  loaded = load_model(url)
  assert "small.keras" in capfd.readouterr().err  # tqdm's bar
  for a, b in zip(loaded.weights, model.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  assert len(server.requests) == 1
  again = wut.Separator(url)
  assert len(server.requests) == 1 and again.forward_pass.config == model.wave_unet_config
  assert len(os.listdir(own_cache)) == 1


@pytest.mark.parametrize("case", ["checksum", "missing", "refused", "not a model name", "not a model"])
def test_failing_url_names_it_and_leaves_nothing_in_the_cache(case, served_model, own_cache):
  _, server, digest = served_model
  url = {"checksum": f"{server.url}/small.keras#sha256={'0' * 64}",
         "missing": f"{server.url}/nothing.keras",
         "refused": "http://127.0.0.1:9/small.keras",
         "not a model name": f"{server.url}/small.zip",
         "not a model": f"{server.url}/junk.keras"}[case]
  with pytest.raises(ValueError) as error:
    load_model(url)
  assert url in str(error.value)
  assert not own_cache.exists() or os.listdir(own_cache) == []


@pytest.mark.slow  # the real command, end to end
def test_download_command_error_is_one_line(served_model, tmp_path):
  _, server, _ = served_model
  url = f"{server.url}/small.keras#sha256={'f' * 64}"
  soundfile.write(tmp_path / "song.wav", np.zeros((4410, 2), np.float32), 22050)
  result = subprocess.run([sys.executable, "-m", "wave_unet_tf.separate", f"--model={url}",
                           f"--output_dir={tmp_path / 'out'}", str(tmp_path / "song.wav")],
                          capture_output=True, text=True, env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "c")})
  assert result.returncode != 0 and "Traceback" not in result.stderr
  last = result.stderr.strip().splitlines()[-1]
  assert url in last and "sha256" in last
  assert not any(f.endswith(".keras") for _, _, files in os.walk(tmp_path / "c") for f in files)


def test_hf_goes_through_keras_own_loader(monkeypatch):
  model = wut.build_model(wut.get_preset("M5").replace(num_layers=3, num_initial_filters=4, num_frames=600))
  asked = []

  def keras_loader(path, compile=True, **kwargs):
    asked.append(path)
    return model

  monkeypatch.setattr(keras.saving, "load_model", keras_loader)
  assert load_model("hf://someone/wave-unet") is model
  assert asked == ["hf://someone/wave-unet"]
  monkeypatch.setattr(keras.saving, "load_model", lambda path, compile=True: keras.Sequential([keras.Input((3,))]))
  with pytest.raises(NotAModelError, match="hf://someone/other: a Keras model, but not a Wave-U-Net"):
    load_model("hf://someone/other")


def test_cache_follows_xdg_cache_home(tmp_path, monkeypatch):
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
  assert model_cache.cache_dir() == str(tmp_path / "xdg" / "wave_unet_tf" / "models")
  monkeypatch.delenv("XDG_CACHE_HOME")
  monkeypatch.setenv("HOME", str(tmp_path / "home"))
  assert model_cache.cache_dir() == str(tmp_path / "home" / ".cache" / "wave_unet_tf" / "models")
