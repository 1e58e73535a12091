"""Decode once: cached tracks match a numpy/soxr reference and rebuild exactly when they should."""

import os
import shutil

import numpy as np
import pytest
import soundfile
import soxr

from wave_unet_tf.config import get_preset
from wave_unet_tf.data import cache
from wave_unet_tf.data.toy import write_toy_dataset
from wave_unet_tf.data.tracks import DatasetError, find_tracks

M5_HIGH = get_preset("M5-HighSR")  # 44.1 kHz stereo, accompaniment + vocals


@pytest.fixture
def toy_root(tmp_path):
  write_toy_dataset(tmp_path / "toy", num_tracks=2, seconds=0.5, seed=4, num_test_tracks=0)
  return tmp_path / "toy"


def reference_sources(track_folder, rate, channels):
  """The voice task by hand: accompaniment = bass + drums + other, channel-converted, soxr-resampled."""
  stems = {n: soundfile.read(os.path.join(track_folder, n + ".wav"), dtype="float32")[0]
           for n in ("vocals", "drums", "bass", "other")}
  sources = {"accompaniment": stems["bass"] + stems["drums"] + stems["other"], "vocals": stems["vocals"]}
  out = {}
  for name, x in sources.items():
    if channels == 1:
      x = x.mean(axis=1, keepdims=True)
    out[name] = soxr.resample(x, 44100, rate, quality="HQ") if rate != 44100 else x
  return out


@pytest.mark.parametrize("rate, channels", [(44100, 2), (22050, 1), (22050, 2)])
def test_cached_track_matches_reference_within_int16_precision(toy_root, tmp_path, rate, channels):
  config = M5_HIGH.replace(sample_rate=rate, num_channels=channels)
  track = find_tracks(toy_root, config)[0]
  audio = cache.cached_track(config, track, tmp_path / "cache")
  reference = reference_sources(track.path, rate, channels)
  peak = max(np.abs(r).max() for r in reference.values())
  for name in config.source_names:
    assert audio[name].dtype == np.float32 and audio[name].shape == reference[name].shape
    np.testing.assert_allclose(audio[name], reference[name], atol=peak / 32767)
  np.testing.assert_array_equal(audio["mix"], audio["accompaniment"] + audio["vocals"])


def test_cache_is_reused_and_memory_mappable(toy_root, tmp_path, monkeypatch):
  tracks = find_tracks(toy_root, M5_HIGH)
  first = cache.cache_tracks(M5_HIGH, tracks, tmp_path / "cache", progress=False)
  monkeypatch.setattr(cache, "decode_track", lambda *a: pytest.fail("decoded a cached track again"))
  second = cache.cache_tracks(M5_HIGH, tracks, tmp_path / "cache", progress=False)
  assert first == second
  array = second[0].load()
  assert isinstance(array, np.memmap) and array.dtype == np.int16
  assert array.shape == (2, second[0].frames, 2)
  assert not [f for f in os.listdir(tmp_path / "cache") if f.startswith(".tmp")]


@pytest.mark.parametrize("change", ["sample_rate", "num_channels", "source_file", "source_names"])
def test_cache_rebuilds_when_rate_channels_sources_or_file_change(toy_root, tmp_path, change):
  config = M5_HIGH
  (track,) = find_tracks(toy_root, config)[:1]
  (before,) = cache.cache_tracks(config, [track], tmp_path / "cache", progress=False)
  if change == "sample_rate":
    config = config.replace(sample_rate=22050)
  elif change == "num_channels":
    config = config.replace(num_channels=1)
  elif change == "source_names":
    config = get_preset("M6").replace(sample_rate=44100)
  else:
    vocals = os.path.join(track.path, "vocals.wav")
    data, rate = soundfile.read(vocals, dtype="float32")
    soundfile.write(vocals, data * 0.5, rate, subtype="FLOAT")
    os.utime(vocals, ns=(1, 1))  # a different modification time for sure
  (track,) = find_tracks(toy_root, config)[:1]
  (after,) = cache.cache_tracks(config, [track], tmp_path / "cache", progress=False)
  assert after.path != before.path
  assert len([f for f in os.listdir(tmp_path / "cache") if f.endswith(".npy")]) == 2
  if change == "sample_rate":
    assert after.frames == before.frames // 2
  if change == "num_channels":
    assert after.channels == 1


def test_incomplete_entry_is_rebuilt(toy_root, tmp_path):
  tracks = find_tracks(toy_root, M5_HIGH)[:1]
  (entry,) = cache.cache_tracks(M5_HIGH, tracks, tmp_path / "cache", progress=False)
  os.remove(entry.path[:-len(".npy")] + ".json")  # as if killed between the two writes
  (again,) = cache.cache_tracks(M5_HIGH, tracks, tmp_path / "cache", progress=False)
  assert again == entry


def test_unreadable_track_is_skipped_with_warning_or_raises_when_strict(toy_root, tmp_path, capsys):
  tracks = find_tracks(toy_root, M5_HIGH)
  # Corrupt a stem after the header check (the file then fails only when decoded).
  vocals = os.path.join(tracks[0].path, "vocals.wav")
  with open(vocals, "r+b") as f:
    f.seek(44)
    f.truncate()
  cached = cache.cache_tracks(M5_HIGH, tracks, tmp_path / "cache", progress=False)
  assert [c.name for c in cached] == [tracks[1].name]
  assert "vocals.wav" in capsys.readouterr().err
  with pytest.raises(DatasetError, match="vocals.wav"):
    cache.cache_tracks(M5_HIGH, tracks, tmp_path / "cache2", strict=True, progress=False)


def test_corrupt_stem_mp4_is_skipped_with_a_named_warning(tmp_path, capsys):
  from conftest import MUSDB_SAMPLE
  root = tmp_path / "musdb"
  (root / "train").mkdir(parents=True)
  shutil.copy(MUSDB_SAMPLE / "train" / "Music Delta - 80s Rock.stem.mp4", root / "train" / "Good.stem.mp4")
  (root / "train" / "Broken.stem.mp4").write_bytes(b"\x00" * 1000)
  tracks = find_tracks(root, M5_HIGH)
  assert [t.name for t in tracks] == ["Broken", "Good"]
  cached = cache.cache_tracks(M5_HIGH, tracks, tmp_path / "cache", progress=False)
  assert [c.name for c in cached] == ["Good"]
  assert "Broken.stem.mp4" in capsys.readouterr().err
