"""wave-unet-separate end to end: the real command in a subprocess, good and bad inputs."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import soundfile

import wave_unet_tf as wut
from conftest import assert_quiet

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]


def run_separate(*args):
  env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as a user runs it
  return subprocess.run([sys.executable, "-m", "wave_unet_tf.separate", *map(str, args)], cwd=PROJECT_ROOT,
                        capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
  from wave_unet_tf.model.saving import save_model
  config = wut.get_preset("M5").replace(num_layers=4, num_initial_filters=4, sample_rate=16000)
  return save_model(wut.build_model(config), str(tmp_path_factory.mktemp("model") / "tiny.keras"))


def write(path, waveform, rate, **kwargs):
  soundfile.write(str(path), waveform, rate, **kwargs)
  return path


def song(seconds, rate, channels, seed=0):
  return np.random.default_rng(seed).uniform(-0.4, 0.4, (int(seconds * rate), channels)).astype(np.float32)


def no_temporary_files(folder):
  return not [p for p in pathlib.Path(folder).rglob(".tmp-*")]


@pytest.mark.slow
def test_separates_several_files_and_reports_the_bad_ones(tmp_path, model_path):
  inputs = tmp_path / "in"
  inputs.mkdir()
  good = [write(inputs / "stereo.wav", song(1.0, 44100, 2), 44100),
          write(inputs / "mono48k.flac", song(0.7, 48000, 1), 48000),
          write(inputs / "song.mp3", song(1.2, 44100, 2), 44100, format="MP3")]
  empty = write(inputs / "empty.wav", np.zeros((0, 2), np.float32), 44100)
  surround = write(inputs / "surround.wav", song(0.2, 44100, 3), 44100)
  nan = write(inputs / "nan.wav", np.full((100, 2), np.nan, np.float32), 44100, subtype="FLOAT")
  missing = inputs / "missing.wav"
  out = tmp_path / "out"
  result = run_separate("--model", model_path, "--output_dir", out, "--codec", "flac", "--window_seconds", "0.3",
                        "--batch_size", "2", good[0], empty, surround, missing, good[1], nan, good[2])
  assert result.returncode == 1, result.stderr
  errors = [line for line in result.stderr.splitlines() if ": error: " in line]
  for bad, why in [(empty, "no audio samples"), (surround, "3 channels"), (missing, "no such audio file"),
                   (nan, "NaN")]:
    assert any(str(bad) in line and why in line for line in errors), result.stderr
  assert "4 of 7 input(s) failed" in errors[-1]
  assert_quiet(result.stdout, result.stderr)
  assert "Traceback" not in result.stderr
  for path in good:
    info = soundfile.info(str(path))
    for source in ("accompaniment", "vocals"):
      written = out / pathlib.Path(path).stem / f"{source}.flac"
      estimate, written_rate = soundfile.read(str(written), always_2d=True)
      assert written_rate == info.samplerate and estimate.shape[1] == info.channels
      if path.suffix != ".mp3":  # MP3 decoders add priming samples; the rest must match exactly
        assert estimate.shape[0] == info.frames
  for bad in (empty, surround, missing, nan):
    assert not (out / pathlib.Path(bad).stem).exists()
  assert no_temporary_files(out)


@pytest.mark.slow
def test_not_a_model_is_a_one_line_error(tmp_path):
  not_a_model = tmp_path / "weights.keras"
  not_a_model.write_text("not a zip")
  wav = write(tmp_path / "a.wav", song(0.1, 16000, 1), 16000)
  result = run_separate("--model", not_a_model, "--output_dir", tmp_path / "out", wav)
  assert result.returncode != 0
  assert result.stderr.strip().splitlines()[-1].startswith("separate.py: error:") or \
      "error:" in result.stderr.strip().splitlines()[-1]
  assert str(not_a_model) in result.stderr and "Traceback" not in result.stderr
  assert not list((tmp_path / "out").rglob("*.wav"))


def test_unwritable_output_dir_fails_before_loading_anything(tmp_path, model_path):
  blocker = tmp_path / "file"
  blocker.write_text("")
  wav = write(tmp_path / "a.wav", song(0.1, 16000, 1), 16000)
  result = run_separate("--model", model_path, "--output_dir", blocker / "sub", wav)
  assert result.returncode == 1
  assert "--output_dir" in result.stderr and str(blocker / "sub") in result.stderr
  assert len(result.stderr.strip().splitlines()) == 1


def test_help_is_instant():
  """--help answers before TensorFlow is imported (what makes it instant, on any machine)."""
  env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
  result = subprocess.run([sys.executable, "-m", "wave_unet_tf.separate", "--help"], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, env=env, timeout=300)
  assert result.returncode == 0 and "--window_seconds" in result.stdout
  imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in result.stderr.splitlines()
              if line.startswith("import time:")}
  assert "absl" in imported and "tensorflow" not in imported and "keras" not in imported


def test_no_inputs_is_a_usage_error(model_path):
  result = run_separate("--model", model_path)
  assert result.returncode == 1 and "give one or more audio files" in result.stderr


def test_in_process_separation_writes_wav_at_the_input_length(tmp_path, model_path):
  from wave_unet_tf import separate
  from wave_unet_tf.separation import Separator
  from wave_unet_tf.separation.outputs import OutputOptions
  wav = write(tmp_path / "Artist - Title.stem.wav", song(0.5, 22050, 2), 22050)
  written, seconds = separate.separate_file(Separator(model_path, window_seconds=0.2, jit_compile=False), str(wav),
                                            str(tmp_path / "out"), OutputOptions(codec="wav"), progress=False)
  assert [pathlib.Path(p).parent.name for p in written] == ["Artist - Title"] * 2
  assert all(soundfile.info(p).frames == int(0.5 * 22050) for p in written)
  assert seconds == pytest.approx(0.5)
