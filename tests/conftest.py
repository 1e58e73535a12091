"""Shared test paths and fixtures."""

import contextlib
import os
import pathlib
import re
import shutil
import subprocess
import tempfile

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The commands keep XLA compilations under $XDG_CACHE_HOME; tests keep theirs out of the user's cache.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="wave_unet_tf_tests_")

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = PROJECT_ROOT / "tests" / "fixtures"
ORIGINAL_TF1 = FIXTURES / "original_tf1"
MUSDB_SAMPLE = FIXTURES / "musdb18_sample" / "MUSDB18-7-SAMPLE"

# Lines a command must not print (TensorFlow's C++ and Python logs, library warnings): see wave_unet_tf.runtime.
STRAY_LINE = re.compile(r"^[IWEF]\d{4} |WARNING: All log messages|rebuild TensorFlow|XlaSerializedCacheEntry|"
                        r"Sharding callback|cuInit|cudart|^WARNING:|Warning: |warnings\.warn|^\s+warnings\.|"
                        r"absl::InitializeLog")


def assert_quiet(*outputs):
  """A command's stdout/stderr hold only its own lines: none in the shape of a log record or library warning,
  none twice (progress bars, which redraw with carriage returns, aside)."""
  lines = [line.strip() for text in outputs for line in text.replace("\r", "\n").splitlines()
           if line.strip() and "|" not in line]
  stray = [line for line in lines if STRAY_LINE.search(line)]
  assert not stray, "stray lines:\n" + "\n".join(stray)
  repeated = sorted({line for line in lines if lines.count(line) > 1})
  assert not repeated, "lines printed twice:\n" + "\n".join(repeated)


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


@contextlib.contextmanager
def small_disk(folder, kib):
  """A tmpfs of ``kib`` KiB mounted on ``folder`` (root only; skipped with the reason elsewhere), unmounted at
  the end: a real full disk."""
  if os.geteuid() != 0:
    pytest.skip("mounting a tmpfs to fill needs root (os.geteuid() != 0)")
  os.makedirs(folder, exist_ok=True)
  mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(folder)],
                           capture_output=True, text=True)
  if mounted.returncode != 0:
    pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
  try:
    yield folder
  finally:
    subprocess.run(["umount", "-l", str(folder)], check=True)


def fill_disk(folder, leave_bytes):
  """A file taking all but ``leave_bytes`` of the disk of ``folder``; returns its path (delete it to free)."""
  usage = os.statvfs(folder)
  filler = pathlib.Path(folder) / "filler"
  with open(filler, "wb") as f:
    f.write(b"\0" * max(0, usage.f_bavail * usage.f_frsize - leave_bytes))
  return filler


@pytest.fixture(scope="session")
def released_archive(tmp_path_factory):
  """``(models.zip, {name: checkpoint prefix})``: the original's release archive with full-size checkpoints of
  M5-HighSR, M4 and M6 (random values; tests/released_models.py), built once per session."""
  from released_models import write_release
  return write_release(tmp_path_factory.mktemp("release"))


def chromium_path():
  """Debian's Chromium for the browser tests (Playwright drives it through ``executable_path``; its own browser
  download is not needed); skips with the reason where Playwright or Chromium is missing."""
  try:
    import playwright.sync_api  # noqa: F401
  except ImportError:
    pytest.skip("the browser tests need Playwright: pip install playwright (its browser download is not needed)")
  for candidate in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
    if candidate and os.path.exists(candidate):
      return candidate
  pytest.skip("the browser tests need Chromium: apt-get install chromium (scripts/install.sh does where it can)")
