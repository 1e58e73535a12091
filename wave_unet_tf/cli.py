"""What every command shares: absl start-up, ``--help`` that lists the command's own flags, the ``--model``
flags, a quiet terminal and one-line errors instead of tracebacks."""

import os
import sys
import textwrap

from absl import app, flags

from wave_unet_tf import catalogue, pretrained, runtime

DEBUG_ENV = runtime.DEBUG_ENV  # set to 1 for full tracebacks and every log line
DEFAULT_COMPILE_CACHE = runtime.DEFAULT_COMPILE_CACHE


MODEL_HELP = (f"A pretrained model's name ({', '.join(catalogue.NAMES)}, or the original's "
              f"{', '.join(e.original_name for e in catalogue.ENTRIES)}: fetched once into the cache), a .keras "
              f"file, a SavedModel folder, a .tflite file, a training --model_dir, an original TF1 checkpoint, or an "
              f"http(s):// or hf:// URL of one.")
MODEL_REPO_ENV = pretrained.REPO_ENV


class UsageError(ValueError):
  """A bad flag value; the message names the flag."""


def define_model_flags(default=None, help_text=MODEL_HELP):
  """``--model`` (required when ``default`` is None) and ``--model_repo``."""
  flags.DEFINE_string("model", default, help_text, required=default is None)
  define_model_repo_flag()


def define_model_repo_flag():
  """``--model_repo``, which sets ``$WAVE_UNET_MODEL_REPO`` for the process (see `run`)."""
  # --model_repo is defined here only: every command that takes --model declares it through this function.
  if "model_repo" in flags.FLAGS:  # two commands' modules in one process (a test, a notebook): one flag
    return
  flags.DEFINE_string("model_repo", None, f"Where the pretrained models' archive comes from instead of the "
                      f"catalogue's URL: a URL of the release's models.zip, a local models.zip, or a folder holding "
                      f"it or its extracted folders (offline machines, mirrors). Default: ${MODEL_REPO_ENV}.")


def fetch_named_model(model):
  """Before TensorFlow starts: the files of a pretrained model named by ``--model`` fetched into the cache, so
  that a download that cannot happen is said in a second, not after TensorFlow's import."""
  if catalogue.is_name(model):
    pretrained.fetch(model)


def run(main, groups=(), known_only=False):
  """Runs an absl ``main``; an expected error (bad input, bad flag, I/O) prints ``<command>: error: <message>``
  on one line and exits with status 1. Set ``WAVE_UNET_DEBUG=1`` for the traceback.

  ``known_only``: flags absl does not know are handed to ``main`` in ``argv`` (for another parser, such as
  Beam's pipeline options, which must then refuse what it does not know either).

  ``--help`` prints the docstring of ``main``'s module and the command's flags, in ``groups`` (``((title,
  (flag name, ...)), ...)``) and then the rest, however the command was started (``python -m``, a console
  script, ``python train.py``).
  """
  module = sys.modules[main.__module__]

  def parse(argv):
    if _asks_for_help(argv[1:]):
      try:
        print(help_text(module, groups), flush=True)
      except BrokenPipeError:  # `--help | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
      sys.exit(0)
    return _parse_flags(argv, known_only)

  def guarded(argv):
    if not runtime.debugging():
      runtime.quiet_terminal()
    if "model_repo" in flags.FLAGS and flags.FLAGS.model_repo:  # for every part of the process that loads a model
      os.environ[MODEL_REPO_ENV] = flags.FLAGS.model_repo
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
  app.run(guarded, flags_parser=parse)


_HELP_ARGUMENTS = ("-h", "-?", "--help", "-help", "--help=true", "--helpshort", "-helpshort")


def _asks_for_help(arguments):
  for argument in arguments:
    if argument == "--":
      return False
    if argument in _HELP_ARGUMENTS:
      return True
  return False


def _own_flags():
  """The command's flags: every flag the process defined but absl's own."""
  return {f.name: f for module, module_flags in flags.FLAGS.flags_by_module_dict().items()
          if not module.startswith("absl.") for f in module_flags}


def _default_text(flag):
  value = flag.default
  if value is None:
    return None
  if isinstance(value, bool):
    return "true" if value else "false"
  if isinstance(value, (list, tuple)):
    return ",".join(str(v) for v in value) or None
  return str(value) if str(value) != "" else "''"


def help_text(module, groups=()) -> str:
  """The command's usage (its module's docstring) and its flags with their help and defaults, grouped."""
  lines = [textwrap.dedent((module.__doc__ or f"{_program()} [flags]").strip("\n")).rstrip(), ""]
  own, listed = _own_flags(), set()
  rest = ("Other flags", tuple(own))  # in the order they were defined
  for title, names in (*groups, rest):
    chosen = [own[name] for name in names if name in own and name not in listed]
    if not chosen:
      continue
    lines.append(f"{title}:" if len(chosen) < len(own) else "Flags:")
    for flag in chosen:
      listed.add(flag.name)
      name = f"--[no]{flag.name}" if flag.boolean else f"--{flag.name}"
      lines.append(flags.text_wrap(f"{name}: {' '.join((flag.help or '').split())}", length=100,
                                   indent="      ", firstline_indent="  "))
      default = _default_text(flag)
      if default is None and _is_required(flag):
        lines.append("      (required)")
      elif default is not None:
        lines.append(f"      (default: {default})")
    lines.append("")
  lines.append("--flagfile=FILE reads flags from a file (given flags override it); --helpfull also lists absl's "
               "own flags.")
  return "\n".join(lines)


def _is_required(flag):  # absl's mark_flag_as_required leaves only this validator behind
  return any("must have a value other than None" in validator.message for validator in flag.validators)


def _parse_flags(argv, known_only=False):
  """absl's parser, but a bad flag is one line that lists the command's own flags."""
  try:
    return flags.FLAGS(argv, known_only=known_only)
  except flags.Error as e:
    own = sorted(_own_flags())
    print(f"{_program()}: error: {e}; valid flags: --{', --'.join(own)} (details: --help)", file=sys.stderr)
    sys.exit(1)


def _program():
  return os.path.basename(sys.argv[0])


def start_tensorflow(compile_cache=runtime.DEFAULT_COMPILE_CACHE):
  """What a command sets before TensorFlow starts (`runtime.configure`): host allocator, compile cache, quiet."""
  runtime.configure(compile_cache=compile_cache)
