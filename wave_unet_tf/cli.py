"""What every command shares: absl start-up, a quiet terminal and one-line errors instead of tracebacks."""

import os
import sys

from absl import app, flags

from wave_unet_tf import runtime

DEBUG_ENV = runtime.DEBUG_ENV  # set to 1 for full tracebacks and every log line
DEFAULT_COMPILE_CACHE = runtime.DEFAULT_COMPILE_CACHE


class UsageError(ValueError):
  """A bad flag value; the message names the flag."""


def run(main, known_only=False):
  """Runs an absl ``main``; an expected error (bad input, bad flag, I/O) prints ``<command>: error: <message>``
  on one line and exits with status 1. Set ``WAVE_UNET_DEBUG=1`` for the traceback.

  ``known_only``: flags absl does not know are handed to ``main`` in ``argv`` (for another parser, such as
  Beam's pipeline options, which must then refuse what it does not know either)."""
  def guarded(argv):
    if not runtime.debugging():
      runtime.quiet_terminal()
    try:
      return main(argv)
    except (ValueError, OSError, RuntimeError) as e:
      if runtime.debugging():
        raise
      message = " ".join(str(e).split()) or type(e).__name__
      print(f"{_program()}: error: {message}", file=sys.stderr)
      sys.exit(1)
    except KeyboardInterrupt:
      print(f"{_program()}: interrupted", file=sys.stderr)
      sys.exit(130)
  app.run(guarded, flags_parser=lambda argv: _parse_flags(argv, known_only))


def _parse_flags(argv, known_only=False):
  """absl's parser, but a bad flag is one line that lists the command's own flags."""
  try:
    return flags.FLAGS(argv, known_only=known_only)
  except flags.Error as e:
    own = sorted(f.name for module, module_flags in flags.FLAGS.flags_by_module_dict().items()
                 if not module.startswith("absl.") for f in module_flags)
    print(f"{_program()}: error: {e}; valid flags: --{', --'.join(own)} (details: --helpfull)", file=sys.stderr)
    sys.exit(1)


def _program():
  return os.path.basename(sys.argv[0])


def start_tensorflow(compile_cache=runtime.DEFAULT_COMPILE_CACHE):
  """What a command sets before TensorFlow starts (`runtime.configure`): host allocator, compile cache, quiet."""
  runtime.configure(compile_cache=compile_cache)
