"""Faults around files, on real processes: hostile audio files, a full disk, and kills at any moment.

Every failure must be one line naming the file, a non-zero exit, no traceback, bounded memory, and nothing
partial left under a final name; after a full disk or a kill the same command must finish the job.
"""

import json
import os
import pathlib
import random
import resource
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile

import wave_unet_tf as wut
from hostile_audio import HOSTILE_NAMES, write_hostile_files

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]
LOAD_MEMORY_LIMIT = 1 << 30  # address space for reading files without TensorFlow: far below what a lie declares
# TensorFlow reserves address space per thread; the bound stays far below the 2 GB a lying header declares.
COMMAND_MEMORY_LIMIT = (3 << 30) + (32 << 20) * (os.cpu_count() or 1)


def _env():
  env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as a user runs it
  env["PYTHONPATH"] = str(PROJECT_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
  return env


def _limit_memory(limit):
  return lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def run_command(name, *args, memory_limit=None, timeout=300):
  return subprocess.run([sys.executable, "-m", f"wave_unet_tf.{name}", *map(str, args)], cwd=PROJECT_ROOT,
                        capture_output=True, text=True, env=_env(), timeout=timeout,
                        preexec_fn=_limit_memory(memory_limit) if memory_limit else None)


def assert_one_line_error(result, *names):
  """Exit status 1, stderr one ``<command>: error: ...`` line naming each of ``names``, no traceback."""
  assert result.returncode == 1, (result.returncode, result.stderr)
  lines = [line for line in result.stderr.splitlines() if line.strip()]
  assert "Traceback" not in result.stderr, result.stderr
  assert len(lines) == 1 and ": error: " in lines[0], result.stderr
  for name in names:
    assert str(name) in lines[0], lines[0]
  return lines[0]


def no_temporary_files(folder):
  return not [p for p in pathlib.Path(folder).rglob(".tmp-*")]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
  return write_hostile_files(str(tmp_path_factory.mktemp("hostile")))


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
  from wave_unet_tf.model.saving import save_model
  config = wut.get_preset("M4").replace(num_layers=3, num_initial_filters=4, num_frames=1024)
  return save_model(wut.build_model(config), str(tmp_path_factory.mktemp("model") / "tiny.keras"))


def song(seconds, rate=44100, channels=2, seed=0):
  return np.random.default_rng(seed).uniform(-0.4, 0.4, (int(seconds * rate), channels)).astype(np.float32)


# -- hostile audio files ---------------------------------------------------------------------------------------

_READERS = r"""
import sys
from wave_unet_tf import audio
from wave_unet_tf.separation.pipeline import AudioSource

def source_blocks(path):
  source = AudioSource(path)
  try:
    return sum(len(b) for b in source.blocks())
  finally:
    source.close()

for reader in (audio.load, audio.info, source_blocks):
  try:
    reader(sys.argv[1])
  except audio.AudioError as e:
    print(e)
  else:
    print(f"{reader.__name__} accepted it")
"""


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_reading_functions_refuse_a_hostile_file_naming_it_in_bounded_memory(hostile, name):
  result = subprocess.run([sys.executable, "-c", _READERS, hostile[name]], capture_output=True, text=True,
                          env=_env(), timeout=60, preexec_fn=_limit_memory(LOAD_MEMORY_LIMIT))
  assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
  messages = result.stdout.splitlines()
  assert len(messages) == 3, result.stdout
  for message in messages:
    assert message.startswith(hostile[name] + ": ") and "accepted" not in message, message


def test_a_valid_file_is_still_read_whole(tmp_path):
  from wave_unet_tf import audio
  from wave_unet_tf.separation.pipeline import AudioSource
  for codec in ("WAV", "FLAC"):
    path = str(tmp_path / f"ok.{codec.lower()}")
    soundfile.write(path, song(2.0), 44100, format=codec)
    waveform, rate = audio.load(path)
    assert waveform.shape == (88200, 2) and rate == 44100
    assert audio.info(path) == (44100, 2, 88200)
    source = AudioSource(path)
    assert sum(len(b) for b in source.blocks()) == 88200
    source.close()


def test_a_wav_stream_of_unknown_length_is_read_as_far_as_it_goes(tmp_path):
  """Writers to pipes (ffmpeg) leave the sizes 0xFFFFFFFF; that is not a truncated file."""
  from wave_unet_tf import audio
  for size in (0xFFFFFFFF,):
    data = np.round(song(0.5) * 32767).astype("<i2").tobytes()
    fmt = (1).to_bytes(2, "little") + (2).to_bytes(2, "little") + (44100).to_bytes(4, "little") + \
        (44100 * 4).to_bytes(4, "little") + (4).to_bytes(2, "little") + (16).to_bytes(2, "little")
    wav = (b"RIFF" + size.to_bytes(4, "little") + b"WAVE" + b"fmt " + (16).to_bytes(4, "little") + fmt + b"data"
           + size.to_bytes(4, "little") + data)
    path = tmp_path / f"stream_{size}.wav"
    path.write_bytes(wav)
    waveform, _ = audio.load(str(path))
    assert waveform.shape == (22050, 2)


def test_separate_reports_every_hostile_file_and_separates_the_good_one(hostile, model_path, tmp_path):
  good = str(tmp_path / "good.wav")
  soundfile.write(good, song(0.5), 44100)
  out = tmp_path / "out"
  result = run_command("separate", "--model", model_path, "--output_dir", out, "--noprogress",
                       *hostile.values(), good, memory_limit=COMMAND_MEMORY_LIMIT)
  assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
  errors = [line for line in result.stderr.splitlines() if line.strip()]
  for name, path in hostile.items():
    assert [line for line in errors if f": error: {path}: " in line], (name, result.stderr)
  assert len(errors) == len(hostile) + 1  # one line each, and the count
  assert sorted(p.name for p in out.iterdir()) == ["good"]
  assert sorted(p.name for p in (out / "good").iterdir()) == ["accompaniment.wav", "vocals.wav"]
  assert no_temporary_files(out)


@pytest.mark.slow
@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_separate_command_on_a_hostile_file_is_one_line_naming_it(hostile, model_path, tmp_path, name):
  out = tmp_path / "out"
  result = run_command("separate", "--model", model_path, "--output_dir", out, hostile[name],
                       memory_limit=COMMAND_MEMORY_LIMIT)
  assert_one_line_error(result, hostile[name])
  assert not list(out.iterdir())
