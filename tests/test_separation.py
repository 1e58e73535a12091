"""Separator: seamless frames equal one whole-song forward pass; any rate and channel count in and out."""

import numpy as np
import pytest

import wave_unet_tf as wut
from wave_unet_tf import audio
from wave_unet_tf.separation import Separator, windows


def tiny_model(preset, **changes):
  config = wut.get_preset(preset).replace(num_layers=4, num_initial_filters=4, sample_rate=8000, **changes)
  return wut.build_model(config)


@pytest.fixture(scope="module")
def models():
  return {preset: tiny_model(preset) for preset in ("M1", "M2", "M5", "M6")}


def whole_song_pass(model, song):
  """One forward pass over the song, zero-padded as the frames see it, and the song's part of the output."""
  config = model.wave_unet_config
  plan = windows.plan_windows(config, len(song), output_frames=len(song))
  outputs = model(windows.padded_song(config, plan, song)[None], training=False)
  return {k: np.asarray(v)[0, plan.keep_offset:plan.keep_offset + len(song)] for k, v in outputs.items()}


@pytest.mark.parametrize("preset", ["M1", "M2", "M5", "M6"])
@pytest.mark.parametrize("window_seconds,batch_size,jit_compile", [(0.01, 1, False), (0.03, 3, True), (2.0, 1, False)])
def test_frames_equal_one_whole_song_forward_pass(models, preset, window_seconds, batch_size, jit_compile):
  model = models[preset]
  song = np.random.default_rng(1).uniform(-0.5, 0.5, (5003, model.wave_unet_config.num_channels)).astype(np.float32)
  reference = whole_song_pass(model, song)
  separator = Separator(model, window_seconds=window_seconds, batch_size=batch_size, jit_compile=jit_compile)
  estimates = separator.separate_at_model_rate(song)
  for source in model.wave_unet_config.source_names:
    assert np.max(np.abs(estimates[source] - reference[source])) <= 1e-5


def test_frame_size_changes_no_sample(models):
  song = np.random.default_rng(2).uniform(-0.5, 0.5, (24000, 2)).astype(np.float32)
  small = Separator(models["M5"], window_seconds=0.05, batch_size=4, jit_compile=False).separate(song, 8000)
  large = Separator(models["M5"], window_seconds=1.5, batch_size=1).separate(song, 8000)
  for source in small:
    assert np.max(np.abs(small[source] - large[source])) <= 1e-5


@pytest.mark.parametrize("preset", ["M1", "M5"])
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("rate", [8000, 16000, 44100, 48000])
def test_output_has_the_input_rate_length_and_channels(models, preset, channels, rate):
  song = np.random.default_rng(3).uniform(-0.5, 0.5, (int(0.37 * rate), channels)).astype(np.float32)
  stems = Separator(models[preset], window_seconds=0.2, jit_compile=False).separate(song, rate)
  assert set(stems) == set(models[preset].wave_unet_config.source_names)
  for estimate in stems.values():
    assert estimate.shape == song.shape and estimate.dtype == np.float32
    assert np.all(np.isfinite(estimate))


def test_difference_output_still_sums_to_the_mixture_after_windowing(models):
  song = np.random.default_rng(4).uniform(-0.3, 0.3, (6000, 2)).astype(np.float32)
  stems = Separator(models["M5"], window_seconds=0.1, jit_compile=False).separate(song, 8000)
  np.testing.assert_allclose(stems["accompaniment"] + stems["vocals"], song, atol=1e-5)


def test_mono_input_into_a_stereo_model_is_duplicated_and_averaged_back(models):
  mono = np.random.default_rng(5).uniform(-0.3, 0.3, (3000, 1)).astype(np.float32)
  separator = Separator(models["M5"], window_seconds=0.2, jit_compile=False)
  from_mono = separator.separate(mono, 8000)
  from_stereo = separator.separate(np.repeat(mono, 2, axis=1), 8000)
  for source in from_mono:
    np.testing.assert_allclose(from_mono[source][:, 0], from_stereo[source].mean(axis=1), atol=1e-6)


def test_silence_separates_to_silence(models):
  stems = Separator(models["M5"]).separate(np.zeros((5000, 2), np.float32), 44100)
  assert all(not estimate.any() and estimate.shape == (5000, 2) for estimate in stems.values())


@pytest.mark.parametrize("samples", [1, 7, 100])
def test_audio_shorter_than_a_frame_is_padded(models, samples):
  song = np.full((samples, 2), 0.1, np.float32)
  stems = Separator(models["M5"], jit_compile=False).separate(song, 44100)
  assert all(estimate.shape == (samples, 2) for estimate in stems.values())


@pytest.mark.parametrize("waveform,message", [
    (np.zeros((0, 2), np.float32), "no audio samples"),
    (np.zeros((100, 3), np.float32), "3 channels"),
    (np.array([[0.1, np.nan]] * 10, np.float32), "NaN"),
    (np.array([[np.inf]] * 10, np.float32), "NaN or Inf"),
])
def test_bad_waveforms_raise_one_line_errors_naming_them(models, waveform, message):
  with pytest.raises(audio.AudioError, match=message) as error:
    Separator(models["M5"]).separate(waveform, 44100, name="song.wav")
  assert str(error.value).startswith("song.wav:") and "\n" not in str(error.value)


def test_progress_reports_every_frame(models):
  calls = []
  Separator(models["M5"], window_seconds=0.05, batch_size=2, jit_compile=False).separate(
      np.full((2000, 2), 0.1, np.float32), 8000, progress=lambda done, total: calls.append((done, total)))
  assert calls[-1][0] == calls[-1][1] and len(calls) == -(-calls[-1][1] // 2)


class FixedFramesRunner:
  """A stand-in for an exported fixed-frame runner (TFLite): one input length, one batch size."""

  def __init__(self, model, input_frames):
    self.config, self.model = model.wave_unet_config, model
    self.input_frames, self.batch_size = input_frames, 2
    self.shapes = set()

  def forward(self, mix):
    self.shapes.add(mix.shape)
    return {k: np.asarray(v) for k, v in self.model(mix, training=False).items()}


def test_a_fixed_frame_forward_pass_plugs_in(models):
  model = models["M5"]
  input_frames, _ = wut.sizes.sizes_for_bottleneck(model.wave_unet_config, 20)
  runner = FixedFramesRunner(model, input_frames)
  song = np.random.default_rng(6).uniform(-0.5, 0.5, (3001, 2)).astype(np.float32)
  estimates = Separator(runner).separate_at_model_rate(song)
  assert runner.shapes == {(2, input_frames, 2)}
  reference = whole_song_pass(model, song)
  for source in estimates:
    assert np.max(np.abs(estimates[source] - reference[source])) <= 1e-5


def test_separator_loads_a_model_file(tmp_path, models):
  from wave_unet_tf.model.saving import save_model
  path = save_model(models["M5"], str(tmp_path / "tiny.keras"))
  stems = wut.Separator(path).separate(np.full((500, 2), 0.1, np.float32), 8000)
  assert set(stems) == {"accompaniment", "vocals"}
