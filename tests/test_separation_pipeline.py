"""Files separated block by block (`Separator.separate_file`): exact against one whole-song forward pass at
the model's rate for any block, window and batch size, the in-memory `Separator` at other rates, any input
ffmpeg reads, and nothing left under a final name when decoding fails part-way."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile

import wave_unet_tf as wut
from wave_unet_tf.separation import pipeline, windows

from conftest import ORIGINAL_TF1, PROJECT_ROOT

RATE = 8000
CONFIG = wut.get_preset("M5").replace(num_layers=4, num_initial_filters=6, sample_rate=RATE)
SONG_FRAMES = 12347  # a multiple of nothing


@pytest.fixture(scope="module")
def model():
  return wut.build_model(CONFIG)


def song(frames=SONG_FRAMES, channels=2, seed=0):
  t = np.arange(frames)[:, None] / RATE
  rng = np.random.default_rng(seed)
  return (0.4 * np.sin(2 * np.pi * 220 * t * (1 + np.arange(channels))) +
          0.1 * rng.standard_normal((frames, channels))).astype(np.float32)


def whole_song_pass(model, waveform):
  config = model.wave_unet_config
  plan = windows.plan_windows(config, len(waveform), output_frames=len(waveform))
  outputs = model(windows.padded_song(config, plan, waveform)[None], training=False)
  return {s: np.asarray(o)[0, :len(waveform)] for s, o in outputs.items()}


def read(path):
  return soundfile.read(path, dtype="float32", always_2d=True)[0]


@pytest.mark.parametrize("block_frames,window_seconds,batch_size", [
    (1000, 0.05, 1), (4096, 0.05, 3), (65536, 0.5, 2), (333, 2.0, 1)])
def test_streamed_file_equals_one_whole_song_pass(model, tmp_path, monkeypatch, block_frames, window_seconds,
                                                   batch_size):
  monkeypatch.setattr(pipeline, "READ_FRAMES", block_frames)
  waveform = song()
  soundfile.write(tmp_path / "song.wav", waveform, RATE, subtype="FLOAT")
  separator = wut.Separator(model, window_seconds=window_seconds, batch_size=batch_size, jit_compile=False)
  paths, seconds = separator.separate_file(str(tmp_path / "song.wav"), str(tmp_path / "out"))
  assert seconds == pytest.approx(SONG_FRAMES / RATE)
  reference = whole_song_pass(model, waveform)
  for source, path in paths.items():
    assert path == str(tmp_path / "out" / "song" / f"{source}.wav")
    np.testing.assert_allclose(read(path), reference[source], atol=1e-5)


def test_original_checkpoint_streamed_equals_its_whole_song_pass(tmp_path):
  folder = ORIGINAL_TF1 / "tiny_m5"
  model = wut.convert_tf1_checkpoint(str(folder), wut.Config.from_json_file(str(folder / "config.json")))
  rate = model.wave_unet_config.sample_rate
  waveform = np.load(folder / "reference.npz")["input"].reshape(-1, 2)[:5003]
  soundfile.write(tmp_path / "excerpt.wav", waveform, rate, subtype="FLOAT")
  paths, _ = wut.Separator(model, window_seconds=0.05, jit_compile=False).separate_file(
      str(tmp_path / "excerpt.wav"), str(tmp_path))
  reference = whole_song_pass(model, waveform)
  for source, path in paths.items():
    np.testing.assert_allclose(read(path), reference[source], atol=1e-5)


@pytest.mark.parametrize("rate,channels", [(11025, 2), (44100, 1), (48000, 2), (6000, 2)])
def test_other_rates_match_the_in_memory_separator_within_the_resamplers_tolerance(model, tmp_path, rate, channels):
  waveform = song(frames=int(1.7 * rate), channels=channels, seed=1)
  soundfile.write(tmp_path / "song.wav", waveform, rate, subtype="FLOAT")
  separator = wut.Separator(model, window_seconds=0.3, jit_compile=False)
  paths, _ = separator.separate_file(str(tmp_path / "song.wav"), str(tmp_path / "out"))
  in_memory = separator.separate(waveform, rate)
  for source, path in paths.items():
    streamed = read(path)
    assert streamed.shape == waveform.shape
    # soxr's streaming and one-shot resamplers differ only by float rounding.
    np.testing.assert_allclose(streamed, in_memory[source], atol=1e-4)


def test_silence_separates_to_silence(model, tmp_path):
  soundfile.write(tmp_path / "silence.flac", np.zeros((3000, 2), np.float32), RATE)
  paths, _ = wut.Separator(model, jit_compile=False).separate_file(str(tmp_path / "silence.flac"), str(tmp_path),
                                                                   codec="flac")
  for path in paths.values():
    assert read(path).shape == (3000, 2) and not np.any(read(path))


def test_a_file_that_fails_to_decode_part_way_names_the_time_and_leaves_no_output(model, tmp_path, monkeypatch):
  monkeypatch.setattr(pipeline, "READ_FRAMES", 2048)
  path = tmp_path / "damaged.flac"
  soundfile.write(path, song(frames=5 * RATE), RATE)
  data = bytearray(path.read_bytes())
  middle = len(data) // 2
  data[middle:middle + 4000] = np.random.default_rng(3).integers(0, 256, 4000, dtype=np.uint8).tobytes()
  path.write_bytes(bytes(data))
  with pytest.raises(wut.audio.AudioError, match=r"damaged\.flac: decoding failed at \d+\.\d s") as error:
    wut.Separator(model, window_seconds=0.1, jit_compile=False).separate_file(str(path), str(tmp_path / "out"))
  assert "\n" not in str(error.value)
  assert [f for _, _, files in os.walk(tmp_path / "out") for f in files] == []


def run_separate(*args, **kwargs):
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(PROJECT_ROOT)}
  return subprocess.run([sys.executable, "-m", "wave_unet_tf.separate", *args], env=env, cwd=PROJECT_ROOT,
                        **kwargs)


@pytest.fixture(scope="module")
def model_file(model, tmp_path_factory):
  path = tmp_path_factory.mktemp("model") / "tiny.keras"
  model.save(path)
  return str(path)


@pytest.mark.slow
def test_a_pipe_in_and_a_source_to_stdout_read_back_by_ffmpeg(model, model_file, tmp_path):
  waveform = song(frames=2 * RATE)
  soundfile.write(tmp_path / "song.wav", waveform, RATE, subtype="FLOAT")
  mp3 = tmp_path / "song.mp3"
  subprocess.run(["ffmpeg", "-v", "error", "-i", str(tmp_path / "song.wav"), str(mp3)], check=True)
  with open(mp3, "rb") as stdin:
    separated = run_separate("--model", model_file, "--nojit_compile", "--stdout=vocals", "-", stdin=stdin,
                             capture_output=True, timeout=300)
  assert separated.returncode == 0, separated.stderr.decode()[-2000:]
  decoded = subprocess.run(["ffmpeg", "-v", "error", "-i", "-", "-f", "f32le", "-"], input=separated.stdout,
                           capture_output=True, check=True).stdout
  vocals = np.frombuffer(decoded, np.float32).reshape(-1, 2)
  # The MP3 decoder's own delay and padding aside, the stream is the vocals of the decoded MP3.
  mp3_samples = soundfile.read(mp3, dtype="float32")[0] if soundfile.check_format("MP3") else None
  assert abs(len(vocals) - len(waveform)) < 2000
  if mp3_samples is not None:
    expected = wut.Separator(model, jit_compile=False).separate(mp3_samples, RATE)["vocals"]
    n = min(len(expected), len(vocals))
    assert np.corrcoef(expected[:n].ravel(), vocals[:n].ravel())[0, 1] > 0.99
  assert b"stdout" in separated.stderr  # the report goes to stderr, the audio to stdout


@pytest.mark.slow
def test_killed_separation_leaves_no_output_under_its_final_name(model_file, tmp_path):
  soundfile.write(tmp_path / "long.wav", song(frames=400 * RATE, seed=4), RATE)
  process = subprocess.Popen([sys.executable, "-m", "wave_unet_tf.separate", "--model", model_file,
                              "--nojit_compile", "--output_dir", str(tmp_path / "out"), "--window_seconds=0.2",
                              str(tmp_path / "long.wav")], cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
  folder = tmp_path / "out" / "long"
  whole_stem = 400 * RATE * 2 * 4  # bytes of a float wav stem, stereo

  def part_written():  # a stem's temporary file holds some, not all, of its samples
    sizes = [f.stat().st_size for f in folder.iterdir() if f.name.startswith(".tmp-")] if folder.exists() else []
    return any(whole_stem // 20 < size < whole_stem // 2 for size in sizes)

  deadline = time.time() + 240
  while not part_written() and process.poll() is None and time.time() < deadline:
    time.sleep(0.005)
  assert process.poll() is None, "the separation ended before it was part-way through"
  process.send_signal(signal.SIGKILL)
  process.wait()
  assert folder.exists() and not [f for f in os.listdir(folder) if not f.startswith(".tmp-")]
