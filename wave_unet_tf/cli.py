"""What every command shares: absl start-up and one-line errors instead of tracebacks."""

import os
import sys

from absl import app, flags

DEBUG_ENV = "WAVE_UNET_DEBUG"  # set to 1 for full tracebacks
DEFAULT_COMPILE_CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"),
                                     "wave_unet_tf", "xla")


class UsageError(ValueError):
  """A bad flag value; the message names the flag."""


def run(main):
  """Runs an absl ``main``; an expected error (bad input, bad flag, I/O) prints ``<command>: error: <message>``
  on one line and exits with status 1. Set ``WAVE_UNET_DEBUG=1`` for the traceback."""
  def guarded(argv):
    try:
      return main(argv)
    except (ValueError, OSError, RuntimeError) as e:
      if os.environ.get(DEBUG_ENV):
        raise
      message = " ".join(str(e).split()) or type(e).__name__
      print(f"{_program()}: error: {message}", file=sys.stderr)
      sys.exit(1)
    except KeyboardInterrupt:
      print(f"{_program()}: interrupted", file=sys.stderr)
      sys.exit(130)
  app.run(guarded, flags_parser=_parse_flags)


def _parse_flags(argv):
  """absl's parser, but a bad flag is one line that lists the command's own flags."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    own = sorted(f.name for module, module_flags in flags.FLAGS.flags_by_module_dict().items()
                 if not module.startswith("absl.") for f in module_flags)
    print(f"{_program()}: error: {e}; valid flags: --{', --'.join(own)} (details: --helpfull)", file=sys.stderr)
    sys.exit(1)


def _program():
  return os.path.basename(sys.argv[0])


def quiet_tensorflow():
  """Keeps TensorFlow's C++ start-up chatter off the terminal (set before TensorFlow is imported)."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def reuse_host_memory():
  """Has TensorFlow keep and reuse host memory (its BFC allocator) instead of asking the system for fresh
  pages on every forward pass: whole-song frames allocate hundreds of megabytes per pass, and faulting them
  in cost ~10 % of separation time on CPU (benchmarks/separate.py). Set before TensorFlow is imported."""
  os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")


def use_compile_cache(folder):
  """Keeps XLA's compiled forward passes in ``folder`` (TensorFlow's persistent compilation cache), so each
  model architecture and frame shape is compiled once per machine rather than once per run. Takes effect
  if called before the process's first XLA compile; an empty ``folder``, or one that cannot be created,
  leaves the cache off."""
  if not folder:
    return
  folder = os.path.abspath(os.path.expanduser(folder))
  try:
    os.makedirs(folder, exist_ok=True)
  except OSError:
    return
  xla_flags = os.environ.get("TF_XLA_FLAGS", "")
  if "--tf_xla_persistent_cache_directory" not in xla_flags:
    os.environ["TF_XLA_FLAGS"] = f"{xla_flags} --tf_xla_persistent_cache_directory={folder}".strip()
