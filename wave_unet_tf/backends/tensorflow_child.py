"""TensorFlow-only work (SavedModel and TFLite exports, the TFLite precisions' conversions) done from another
backend: in a child Python with ``KERAS_BACKEND=tensorflow``, on the model saved to a temporary ``.keras``
file (which every backend reads). TensorFlow is a core dependency, so it is always there to switch to; the
result is the file TensorFlow writes, the same whichever backend asked for it."""

import json
import os
import subprocess
import sys
import tempfile

_CHILD = r"""
import importlib, json, sys
from wave_unet_tf import runtime
runtime.configure()
from wave_unet_tf.model.saving import load_keras_model
module, function = sys.argv[1].split(":")
arguments = json.loads(sys.argv[3])
try:
  getattr(importlib.import_module(module), function)(load_keras_model(sys.argv[2]), *arguments["args"],
                                                     **arguments["kwargs"])
except (ValueError, OSError, RuntimeError) as e:
  if runtime.debugging():
    raise
  print(" ".join(str(e).split()) or type(e).__name__, file=sys.stderr)
  sys.exit(1)
"""


def environment() -> dict:
  """This process' environment with ``KERAS_BACKEND=tensorflow`` and this package importable."""
  env = dict(os.environ, KERAS_BACKEND="tensorflow")
  package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  env["PYTHONPATH"] = os.pathsep.join([package_root, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
  return env


def call(function: str, model, *args, **kwargs) -> None:
  """``function(model, *args, **kwargs)`` (``"package.module:name"``, arguments JSON values) run on TensorFlow:
  here when Keras runs on TensorFlow, else in a child process; its error is raised here as a one-line
  RuntimeError."""
  from wave_unet_tf import backends
  module, name = function.split(":")
  if backends.is_tensorflow():
    import importlib
    getattr(importlib.import_module(module), name)(model, *args, **kwargs)
    return
  from wave_unet_tf.model.saving import save_model
  with tempfile.TemporaryDirectory(prefix="wave-unet-tf-") as folder:
    path = save_model(model, os.path.join(folder, "model.keras"))
    result = subprocess.run([sys.executable, "-c", _CHILD, function, path,
                             json.dumps({"args": list(args), "kwargs": kwargs})],
                            env=environment(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  if result.returncode != 0:
    lines = result.stderr.strip().splitlines() or [f"exit status {result.returncode}"]
    raise RuntimeError(f"{function.split(':')[1]} (on TensorFlow, in a child process): {lines[-1]}")


def rerun_command(module: str) -> int:
  """Runs the command ``python -m module`` with this process' arguments on TensorFlow; its exit status. The
  child keeps this process' ``argv[0]``, so its messages name the command as the user typed it."""
  code = f"import runpy, sys; sys.argv.pop(0); runpy.run_module({module!r}, run_name='__main__')"
  return subprocess.run([sys.executable, "-c", code, *sys.argv], env=environment()).returncode
