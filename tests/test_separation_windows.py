"""Frame planning (pure numpy): frames on the 2**num_layers grid whose kept outputs tile the song."""

import numpy as np
import pytest

from wave_unet_tf import sizes
from wave_unet_tf.config import get_preset
from wave_unet_tf.sizes import context_frames, sizes_for_bottleneck
from wave_unet_tf.separation import windows


@pytest.mark.parametrize("preset", ["M1", "M4", "M5-HighSR", "M6", "M7"])
@pytest.mark.parametrize("song_frames", [1, 4095, 44100 * 30, 44100 * 200 + 17])
@pytest.mark.parametrize("window_seconds", [0.5, 10.0])
def test_frames_start_on_the_grid_and_tile_the_song(preset, song_frames, window_seconds):
  config = get_preset(preset)
  plan = windows.plan_windows(config, song_frames, output_frames=int(window_seconds * config.sample_rate))
  g = sizes.grid(config)
  assert plan.stride % g == 0 and plan.stride >= g
  assert plan.input_frames - plan.output_frames == (context_frames(config) if config.context else 0)
  starts = [plan.input_start(k) + plan.context_before for k in range(plan.num_windows)]
  assert all(s % g == 0 for s in starts)
  covered = sum(plan.kept_frames(k) for k in range(plan.num_windows))
  assert covered == song_frames and plan.kept_frames(plan.num_windows - 1) > 0
  assert plan.keep_offset + plan.stride <= plan.output_frames


def test_context_model_frames_drop_only_the_few_samples_off_the_grid():
  plan = windows.plan_windows(get_preset("M5-HighSR"), 44100 * 60, output_frames=441000)
  assert plan.output_frames - plan.stride == 16389 % 4096  # 5 samples per frame
  assert plan.context_before == 131054 // 2


def test_same_padding_margin_covers_the_receptive_field():
  config = get_preset("M1")
  margin = sizes.same_padding_margin(config)
  assert margin % sizes.grid(config) == 0
  assert margin > context_frames(config.replace(context=True)) // 2


def test_short_song_gets_one_short_frame():
  config = get_preset("M5-HighSR")
  plan = windows.plan_windows(config, 1000, output_frames=441000)
  assert plan.num_windows == 1 and plan.stride == 4096 * 14  # an eighth of the frame, on the grid


@pytest.mark.parametrize("song_frames,expected", [
    (1, 100), (100, 100), (799, 800), (800, 800), (801, 500), (1601, 600), (10 ** 6, 800)])
def test_frames_split_the_song_evenly_in_eighths_of_the_longest(song_frames, expected):
  assert windows.window_length(800, song_frames) == expected


def test_songs_of_similar_lengths_share_frame_shapes():
  config = get_preset("M5-HighSR")
  lengths = range(44100 * 150, 44100 * 300, 44100)  # 2.5 to 5 minutes, every second
  shapes = {windows.plan_windows(config, n, output_frames=44100 * 15).input_frames for n in lengths}
  assert len(shapes) <= windows.WINDOW_STEPS


def test_fixed_input_frames_are_checked():
  config = get_preset("M5-HighSR")
  input_frames, output_frames = sizes_for_bottleneck(config, 40)
  plan = windows.plan_windows(config, 100000, input_frames=input_frames)
  assert plan.output_frames == output_frames
  with pytest.raises(ValueError, match="not a valid input length"):
    windows.plan_windows(config, 100000, input_frames=input_frames + 1)
  with pytest.raises(ValueError, match="multiple of 4096"):
    windows.plan_windows(get_preset("M1"), 100000, input_frames=5000)


def test_gather_pads_with_zeros_and_scatter_fills_the_song():
  config = get_preset("M5").replace(num_layers=3, num_initial_filters=2)
  song = np.arange(100, dtype=np.float32)[:, None].repeat(2, axis=1)
  plan = windows.plan_windows(config, 100, output_frames=16)
  padded = windows.padded_song(config, plan, song)
  batch = plan.gather(song, range(plan.num_windows), batch_size=plan.num_windows + 1)
  for k in range(plan.num_windows):
    start = k * plan.stride
    np.testing.assert_array_equal(batch[k], padded[start:start + plan.input_frames])
  assert not batch[-1].any()
  out = np.zeros_like(song)
  outputs = np.stack([padded[k * plan.stride + plan.context_before:][:plan.output_frames]
                      for k in range(plan.num_windows)])
  plan.scatter(outputs, range(plan.num_windows), out)
  np.testing.assert_array_equal(out, song)
