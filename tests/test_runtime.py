"""wave_unet_tf.runtime: what is set before TensorFlow starts, and the quiet terminal (in fresh processes, as
both must happen before TensorFlow is imported)."""

import os
import subprocess
import sys

import pytest

from conftest import PROJECT_ROOT

NOISY = r"""
import os, sys, warnings
import wave_unet_tf as wut
wut.runtime.configure()
os.write(2, b"E0000 00:00:1795577625.237774   26620 text_format.cc:378] Error parsing text-format "
            b"tensorflow.XlaSerializedCacheEntry: 2:1: Expected identifier, got: 4\n")
os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
os.write(2, b"a C++ line of another shape\n")
warnings.warn_explicit("a library warning", UserWarning, "somelib.py", 1, module="somelib")
print("own line on stderr", file=sys.stderr)
print("own line on stdout")
"""


def run(code, **env):
  environment = {k: v for k, v in os.environ.items() if k not in ("WAVE_UNET_DEBUG", "TF_XLA_FLAGS",
                                                                  "TF_CPU_ALLOCATOR_USE_BFC")}
  environment.update(env, PYTHONPATH=str(PROJECT_ROOT))
  return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment, timeout=60)


def test_quiet_terminal_drops_tensorflow_log_lines_and_library_warnings_only():
  result = run(NOISY)
  assert result.returncode == 0, result.stderr
  assert result.stdout == "own line on stdout\n"
  # The C++ side's lines pass through a pipe, Python's do not: the order between the two may differ.
  assert sorted(result.stderr.splitlines()) == ["a C++ line of another shape", "own line on stderr"]


def test_debug_shows_everything():
  result = run(NOISY, WAVE_UNET_DEBUG="1")
  for shown in ("XlaSerializedCacheEntry", "absl::InitializeLog", "a library warning", "own line on stderr"):
    assert shown in result.stderr


@pytest.mark.parametrize("user_flags,expected", [("", "{cache}"), ("--tf_xla_persistent_cache_directory=/mine",
                                                                   "/mine")])
def test_import_sets_host_allocator_and_compile_cache_keeping_the_users(tmp_path, user_flags, expected):
  code = ("import os, wave_unet_tf; print(os.environ['TF_CPU_ALLOCATOR_USE_BFC']); "
          "print(os.environ['TF_XLA_FLAGS'])")
  result = run(code, TF_XLA_FLAGS=user_flags, XDG_CACHE_HOME=str(tmp_path))
  allocator, xla_flags = result.stdout.splitlines()
  assert allocator == "true"
  cache = os.path.join(str(tmp_path), "wave_unet_tf", "xla")
  assert xla_flags == f"--tf_xla_persistent_cache_directory={expected.format(cache=cache)}"


def test_configure_without_a_cache_removes_it_and_leaves_tensorflow_running_alone():
  code = ("import os, wave_unet_tf as wut; wut.runtime.configure(compile_cache=None, quiet=False); "
          "print(repr(os.environ.get('TF_XLA_FLAGS'))); import tensorflow; "
          "wut.runtime.configure(compile_cache='/elsewhere', quiet=False); print(repr(os.environ.get('TF_XLA_FLAGS')))")
  result = run(code)
  assert result.stdout.splitlines() == ["None", "None"], result.stderr  # after TensorFlow started: no change
