"""Finding tracks: layouts, source mapping, splits and bad input."""

import os

import numpy as np
import pytest
import soundfile

from wave_unet_tf.config import get_preset
from wave_unet_tf.data import tracks as track_finder
from wave_unet_tf.data.cache import cached_track
from wave_unet_tf.data.toy import write_toy_dataset
from wave_unet_tf.data.tracks import DatasetError, find_tracks

from conftest import MUSDB_SAMPLE

VOICE = get_preset("M4")
MULTI = get_preset("M6")
SAMPLE_TRACK = "Music Delta - 80s Rock"


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory):
  root = tmp_path_factory.mktemp("toy")
  write_toy_dataset(root, num_tracks=8, seconds=0.5, seed=1)
  return root


def write_track(folder, stems, rate=44100):
  """``{stem: [frames, channels]}`` as WAV files in ``folder``."""
  os.makedirs(folder, exist_ok=True)
  for name, waveform in stems.items():
    soundfile.write(os.path.join(folder, name + ".wav"), waveform, rate, subtype="FLOAT")


def noise(frames, channels=2, seed=0):
  return (np.random.default_rng(seed).standard_normal((frames, channels)) * 0.1).astype(np.float32)


@pytest.mark.parametrize("config, expected", [
    (VOICE, {"accompaniment": ("bass.wav", "drums.wav", "other.wav"), "vocals": ("vocals.wav",)}),
    (MULTI, {s: (s + ".wav",) for s in ("bass", "drums", "other", "vocals")}),
])
def test_wav_layout_maps_config_sources_to_stems(toy_root, config, expected):
  tracks = find_tracks(toy_root, config, subset="train")
  assert len(tracks) == 8
  assert [t.name for t in tracks] == sorted(t.name for t in tracks)
  for track in tracks:
    assert track.source_names == config.source_names
    got = {name: tuple(os.path.basename(s.path) for s in stems) for name, stems in track.sources}
    assert got == expected


def test_test_subset_and_autodetected_wav_layout(toy_root):
  tracks = find_tracks(toy_root, VOICE, subset="test", is_wav=None)
  assert len(tracks) == 2 and all(t.subset == "test" for t in tracks)


def test_real_stem_file_is_found_and_read_through_musdb(tmp_path):
  import musdb
  (track,) = find_tracks(MUSDB_SAMPLE, VOICE, subset="train")
  assert track.name == SAMPLE_TRACK
  assert {s.stream for s in dict(track.sources)["accompaniment"]} == {1, 2, 3}  # drums, bass, other
  mus_track = musdb.DB(root=str(MUSDB_SAMPLE), subsets="train")[0]
  assert mus_track.name == SAMPLE_TRACK
  reference = mus_track.targets["vocals"].audio  # musdb's own decoding, int16 precision
  # M4 runs at 22.05 kHz; compare at the file's rate.
  audio = cached_track(VOICE.replace(sample_rate=44100), track, tmp_path)
  assert audio["vocals"].shape == reference.shape
  np.testing.assert_allclose(audio["vocals"], reference, atol=2e-4)


def test_official_split_of_other_songs_falls_back_to_seeded_random_split(toy_root, capsys, monkeypatch):
  from wave_unet_tf import runtime
  monkeypatch.setattr(runtime, "_said", set())
  train = find_tracks(toy_root, VOICE, split="train")
  valid = find_tracks(toy_root, VOICE, split="valid")
  assert capsys.readouterr().err.count("random 75/25 split with seed 1337") == 1  # said once, not per lookup
  assert len(valid) == 2 and len(train) == 6
  assert not {t.name for t in train} & {t.name for t in valid}
  assert [t.name for t in valid] == [t.name for t in find_tracks(toy_root, VOICE, split="valid",
                                                                  split_mode="random")]


def test_official_split_uses_musdb_validation_list(tmp_path):
  names = ["Actions - One Minute Smile", "A Classic Education - NightOwl"]  # the first is a validation song
  for i, name in enumerate(names):
    write_track(tmp_path / "train" / name, {s: noise(100, seed=i) for s in ("vocals", "drums", "bass", "other")})
  assert [t.name for t in find_tracks(tmp_path, VOICE, split="valid")] == ["Actions - One Minute Smile"]
  assert [t.name for t in find_tracks(tmp_path, VOICE, split="train")] == ["A Classic Education - NightOwl"]


def test_random_split_is_the_originals_75_25_with_seed_1337():
  names = [f"song {i:03d}" for i in range(100)]
  valid = track_finder.random_validation_names(names)
  expected = {names[i] for i in np.random.RandomState(1337).choice(100, 25, replace=False)}
  assert valid == expected


def test_custom_sources_mono_at_another_rate(tmp_path):
  config = get_preset("M1").replace(source_names=("piano", "guitar"), sample_rate=22050)
  write_track(tmp_path / "train" / "song", {"piano": noise(300, 1), "guitar": noise(300, 1, 1),
                                             "mixture": noise(300, 1, 2)}, rate=16000)
  (track,) = find_tracks(tmp_path, config)
  assert track.source_names == ("piano", "guitar")


def test_empty_root_names_root_layout_and_toy_command(tmp_path):
  (tmp_path / "train").mkdir()
  with pytest.raises(DatasetError) as error:
    find_tracks(tmp_path, VOICE)
  message = str(error.value)
  assert str(tmp_path) in message and "mixture.wav" in message and ".stem.mp4" in message
  assert "wave-unet-toy-data" in message


def test_missing_root_is_an_error(tmp_path):
  with pytest.raises(DatasetError, match="no such folder"):
    find_tracks(tmp_path / "nope", VOICE)


def test_unequal_stem_lengths_name_the_track(tmp_path):
  write_track(tmp_path / "train" / "Bad Song", {"vocals": noise(100), "drums": noise(90), "bass": noise(100),
                                                "other": noise(100)})
  with pytest.raises(DatasetError, match="'Bad Song'.*unequal length"):
    find_tracks(tmp_path, VOICE)


def test_unequal_stem_rates_name_the_track(tmp_path):
  folder = tmp_path / "train" / "Odd Rates"
  write_track(folder, {"vocals": noise(100), "drums": noise(100), "bass": noise(100)})
  write_track(folder, {"other": noise(100)}, rate=22050)
  with pytest.raises(DatasetError, match="'Odd Rates'.*unequal sample rate"):
    find_tracks(tmp_path, VOICE)


def test_corrupt_file_skips_track_with_warning_or_raises_when_strict(toy_root, tmp_path, capsys):
  import shutil
  root = tmp_path / "root"
  shutil.copytree(toy_root / "train", root / "train")
  bad = sorted((root / "train").iterdir())[0]
  (bad / "bass.wav").write_bytes(b"not audio at all")
  tracks = find_tracks(root, VOICE)
  assert len(tracks) == 7 and bad.name not in [t.name for t in tracks]
  err = capsys.readouterr().err
  assert "bass.wav" in err and bad.name in err
  with pytest.raises(DatasetError, match="bass.wav"):
    find_tracks(root, VOICE, strict=True)


def test_missing_source_stem_is_named(tmp_path):
  write_track(tmp_path / "train" / "song", {"vocals": noise(100), "drums": noise(100)})
  with pytest.raises(DatasetError, match="no stem for source 'bass'"):
    find_tracks(tmp_path, MULTI)


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(subset="test", split="train"), "train' subset only"),
    (dict(split="validation"), "split="),
    (dict(split="train", split_mode="alphabetical"), "split_mode="),
])
def test_bad_split_arguments(toy_root, kwargs, pattern):
  with pytest.raises(DatasetError, match=pattern):
    find_tracks(toy_root, VOICE, **kwargs)


def test_missing_ffmpeg_is_a_one_line_instruction_for_stem_files(monkeypatch):
  monkeypatch.setattr(track_finder.shutil, "which", lambda tool: None)
  with pytest.raises(DatasetError) as error:
    find_tracks(MUSDB_SAMPLE, VOICE)
  assert "ffmpeg" in str(error.value) and "apt-get install" in str(error.value) and "\n" not in str(error.value)


def test_wav_datasets_get_musdbs_validation_list_without_ffmpeg(monkeypatch):
  with_ffmpeg = track_finder.musdb_setup()
  monkeypatch.setattr(track_finder.shutil, "which", lambda tool: None)
  assert track_finder.musdb_setup()["validation_tracks"] == with_ffmpeg["validation_tracks"]
