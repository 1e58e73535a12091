"""Shared test paths and fixtures."""

import os
import pathlib
import tempfile

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The commands keep XLA compilations under $XDG_CACHE_HOME; tests keep theirs out of the user's cache.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="wave_unet_tf_tests_")

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = PROJECT_ROOT / "tests" / "fixtures"
ORIGINAL_TF1 = FIXTURES / "original_tf1"
MUSDB_SAMPLE = FIXTURES / "musdb18_sample" / "MUSDB18-7-SAMPLE"

ORIGINAL_MODELS = ("tiny_m5", "tiny_m6", "tiny_direct_multi", "tiny_m1_same", "tiny_learned_same", "deep_m5_thin")


@pytest.fixture(scope="session")
def original_tf1():
  if not ORIGINAL_TF1.is_dir():
    pytest.fail(f"test fixtures not found at {ORIGINAL_TF1}")
  return ORIGINAL_TF1


@pytest.fixture(scope="session")
def toy_root(tmp_path_factory):
  """A small toy dataset in MUSDB18-HQ layout: 4 training songs and 1 test song of 3 s (3 train + 1 valid by the seeded split)."""
  from wave_unet_tf.data.toy import write_toy_dataset
  root = tmp_path_factory.mktemp("toy")
  write_toy_dataset(str(root), num_tracks=4, seconds=3.0, seed=7, num_test_tracks=1)
  return root
