"""The toy dataset: layout, exact mixture, determinism, musdb compatibility, distinguishable sources, command."""

import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from conftest import assert_quiet
from wave_unet_tf.data.toy import STEMS, write_toy_dataset

FILES = ("mixture",) + STEMS


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory):
  root = tmp_path_factory.mktemp("toy")
  write_toy_dataset(root, num_tracks=3, seconds=2.0, seed=42)
  return root


def read(folder, name):
  data, rate = soundfile.read(os.path.join(folder, name + ".wav"), dtype="float32")
  return data, rate


def test_layout_is_musdb18_hq_at_44k_stereo(toy_root):
  for subset, count in (("train", 3), ("test", 1)):
    folders = sorted((toy_root / subset).iterdir())
    assert len(folders) == count
    for folder in folders:
      assert sorted(os.listdir(folder)) == sorted(n + ".wav" for n in FILES)
      for name in FILES:
        info = soundfile.info(str(folder / (name + ".wav")))
        assert (info.samplerate, info.channels, info.frames) == (44100, 2, 88200)


def test_mixture_is_exactly_the_sum_of_the_stems(toy_root):
  for folder in (toy_root / "train").iterdir():
    mixture, _ = read(folder, "mixture")
    total = np.zeros_like(mixture)
    for name in STEMS:
      total += read(folder, name)[0]
    np.testing.assert_array_equal(mixture, total)
    assert 0.1 < np.abs(mixture).max() <= 1.0


def test_same_seed_same_files_other_seed_other_files(toy_root, tmp_path):
  write_toy_dataset(tmp_path / "again", num_tracks=3, seconds=2.0, seed=42)
  write_toy_dataset(tmp_path / "other", num_tracks=1, seconds=2.0, seed=43)
  name = sorted(os.listdir(toy_root / "train"))[0]
  for stem in FILES:  # samples, not bytes: float WAV headers carry a write time stamp (PEAK chunk)
    np.testing.assert_array_equal(read(toy_root / "train" / name, stem)[0],
                                  read(tmp_path / "again" / "train" / name, stem)[0])
  other = sorted((tmp_path / "other" / "train").iterdir())[0]
  assert not np.array_equal(read(other, "vocals")[0], read(toy_root / "train" / name, "vocals")[0])


def test_musdb_reads_it_as_musdb18_hq(toy_root):
  import musdb
  db = musdb.DB(root=str(toy_root), is_wav=True, subsets="train")
  assert len(db) == 3
  track = db[0]
  assert track.audio.shape == (88200, 2) and track.rate == 44100
  np.testing.assert_allclose(track.targets["accompaniment"].audio + track.targets["vocals"].audio,
                             track.audio, atol=1e-3)


def spectral_centroid(x, rate=44100):
  spectrum = np.abs(np.fft.rfft(x.mean(axis=1))) ** 2  # power, so faint broadband content weighs little
  freqs = np.fft.rfftfreq(len(x), 1 / rate)
  return float(np.sum(freqs * spectrum) / np.sum(spectrum))


def test_sources_are_distinguishable(toy_root):
  folder = sorted((toy_root / "train").iterdir())[0]
  stems = {name: read(folder, name)[0] for name in STEMS}
  centroids = {name: spectral_centroid(x) for name, x in stems.items()}
  assert centroids["bass"] < 250
  assert centroids["bass"] < centroids["other"] < centroids["drums"]
  assert 250 < centroids["vocals"] < 3000
  # Vocals are pitched: strong peaks in the spectrum, not flat like the drums' noise.
  peakiness = {n: np.max(np.abs(np.fft.rfft(x[:, 0]))) / np.mean(np.abs(np.fft.rfft(x[:, 0])))
               for n, x in stems.items()}
  assert peakiness["vocals"] > 3 * peakiness["drums"]
  # The pads are wide (detuned left/right), the vocals centred.
  assert np.array_equal(stems["vocals"][:, 0], stems["vocals"][:, 1])
  assert not np.allclose(stems["other"][:, 0], stems["other"][:, 1])


@pytest.mark.parametrize("kwargs", [dict(num_tracks=0), dict(seconds=0)])
def test_bad_arguments(tmp_path, kwargs):
  with pytest.raises(ValueError):
    write_toy_dataset(tmp_path, **{"num_tracks": 1, "seconds": 1.0, **kwargs})


@pytest.mark.slow
def test_command_writes_the_dataset_and_rejects_unknown_flags(tmp_path):
  command = [sys.executable, "-m", "wave_unet_tf.toy_data", "--output_dir", str(tmp_path / "toy"),
             "--num_tracks", "2", "--seconds", "0.5", "--seed", "1"]
  result = subprocess.run(command, capture_output=True, text=True)
  assert result.returncode == 0, result.stderr
  assert_quiet(result.stdout, result.stderr)
  assert len(os.listdir(tmp_path / "toy" / "train")) == 2 and len(os.listdir(tmp_path / "toy" / "test")) == 1
  result = subprocess.run(command + ["--bogus"], capture_output=True, text=True)
  assert result.returncode != 0 and "bogus" in result.stderr and "Traceback" not in result.stderr
