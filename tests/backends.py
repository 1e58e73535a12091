"""Running code under another Keras backend: Keras picks its backend once per process, so each check runs in
a child Python with ``KERAS_BACKEND`` set, and returns what it printed (or wrote) to the test."""

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import PROJECT_ROOT

OTHER_BACKENDS = ("jax", "torch")
ALL_BACKENDS = ("tensorflow",) + OTHER_BACKENDS


def installed(backend: str) -> bool:
  return backend == "tensorflow" or importlib.util.find_spec(backend) is not None


def skip_unless_installed(backend: str) -> None:
  if not installed(backend):
    pytest.skip(f"the {backend} backend is not installed (pip install -e '.[{backend}]')")


def environment(backend: str, **extra) -> dict:
  """This process' environment with ``KERAS_BACKEND=backend``, the checkout first on the path."""
  env = dict(os.environ, KERAS_BACKEND=backend, **extra)
  env["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
  return env


def run_python(backend: str, code: str, *args, timeout: float = 600, check: bool = True,
               **extra_env) -> subprocess.CompletedProcess:
  """Runs ``code`` (dedented) in a child Python under ``backend``; fails the test with its output on error."""
  skip_unless_installed(backend)
  result = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
                          env=environment(backend, **extra_env), capture_output=True, text=True,
                          timeout=timeout, cwd=str(PROJECT_ROOT))
  if check and result.returncode != 0:
    pytest.fail(f"under KERAS_BACKEND={backend}, the child exited {result.returncode}:\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
  return result
