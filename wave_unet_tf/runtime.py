"""How TensorFlow runs in this package: the settings that must be made before TensorFlow starts, and a quiet
terminal. One call, ``configure()``, used by every command and by Python users alike:

    import wave_unet_tf as wut
    wut.runtime.configure()          # before the first TensorFlow call; the commands do the same

Before TensorFlow is imported, ``configure`` (and ``import wave_unet_tf`` itself, for the environment part)
sets:

- ``TF_CPU_ALLOCATOR_USE_BFC=true``: TensorFlow keeps and reuses host memory instead of faulting in fresh
  pages on every forward pass (whole-song windows allocate hundreds of megabytes per pass).
- XLA's persistent compile cache (``--tf_xla_persistent_cache_directory``, default
  ``$XDG_CACHE_HOME/wave_unet_tf/xla``): each architecture and window shape is compiled once per machine.
- ``TF_CPP_MIN_LOG_LEVEL=2``.

With ``quiet=True`` it also keeps TensorFlow's C++ log lines (written to file descriptor 2 by absl and glog,
some before any log level applies: ``cudart_stub``, ``cuInit``, ``Error parsing text-format
tensorflow.XlaSerializedCacheEntry`` from the compile cache, which TensorFlow first tries to read as text
and then reads as binary) and library warnings off the terminal, so a command prints only its own lines.
``WAVE_UNET_DEBUG=1`` turns all of this off: everything is shown.
"""

import atexit
import contextlib
import logging
import os
import re
import sys
import tempfile
import threading
import warnings

DEBUG_ENV = "WAVE_UNET_DEBUG"  # set to 1 for tracebacks and every log line
DEFAULT_COMPILE_CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"),
                                     "wave_unet_tf", "xla")
_CACHE_FLAG = "--tf_xla_persistent_cache_directory"

# Lines TensorFlow's C++ side writes to file descriptor 2: glog/absl records ("E0000 00:00:17... 123
# file.cc:52] ..."), absl's pre-initialisation notice, and the CPU-feature note's second line.
NOISE = re.compile(r"^([IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w.\-/]+:\d+\] |"
                   r"WARNING: All log messages before absl::InitializeLog\(\) is called|"
                   r"To enable the following instructions: .* rebuild TensorFlow|"
                   r"INFO: Created TensorFlow Lite .*delegate for CPU|"  # LiteRT, once per interpreter
                   # libmpg123 (in libsndfile) trying a file that is not MP3
                   r"Note: (Illegal Audio-MPEG-Header|Trying to resync|Hit end of \(available\) data))")
LIBRARY_LOGGERS = ("tensorflow", "keras", "absl.tensorflow", "h5py", "jax", "numba", "matplotlib")

_filter = None


def debugging():
  """True when ``WAVE_UNET_DEBUG`` asks for tracebacks and every log line."""
  return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def configure(compile_cache=DEFAULT_COMPILE_CACHE, host_allocator=True, quiet=True):
  """Sets how TensorFlow runs; call it before the first TensorFlow operation (the commands call it first).

  ``compile_cache``: a folder for XLA's compiled programs ('' or None: none). ``host_allocator``: TensorFlow's
  BFC host allocator. Both only take effect if TensorFlow is not imported yet. ``quiet``: keep TensorFlow's
  C++ log lines and library warnings off the terminal (unless ``WAVE_UNET_DEBUG=1``).
  """
  prepare_environment(compile_cache, host_allocator)
  if quiet and not debugging():
    quiet_terminal()


def prepare_environment(compile_cache=DEFAULT_COMPILE_CACHE, host_allocator=True, keep_user_cache=False):
  """The environment part of `configure` (what ``import wave_unet_tf`` does with ``keep_user_cache``: a cache
  folder the user already set in ``TF_XLA_FLAGS`` is kept). Nothing happens once TensorFlow is imported."""
  if "tensorflow" in sys.modules:
    return
  if not debugging():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  if host_allocator:
    os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")
  if not (keep_user_cache and _CACHE_FLAG in os.environ.get("TF_XLA_FLAGS", "")):
    _set_compile_cache(compile_cache)
  from wave_unet_tf import backends
  backends.set_compile_cache(compile_cache, keep_user_cache)


def _set_compile_cache(folder):
  """Points XLA's persistent cache at ``folder`` (replacing one set before); none if empty or not creatable."""
  flags = [f for f in os.environ.get("TF_XLA_FLAGS", "").split() if not f.startswith(_CACHE_FLAG)]
  if folder:
    folder = os.path.abspath(os.path.expanduser(folder))
    try:
      os.makedirs(folder, exist_ok=True)
      flags.append(f"{_CACHE_FLAG}={folder}")
    except OSError:
      pass
  if flags:
    os.environ["TF_XLA_FLAGS"] = " ".join(flags)
  else:
    os.environ.pop("TF_XLA_FLAGS", None)


def quiet_terminal():
  """Library warnings and TensorFlow's C++ log lines off; this package's own output untouched.

  Python keeps writing to the real stderr; file descriptor 2, where C++ code writes, becomes a pipe whose
  lines are passed on unless they are TensorFlow log records (`NOISE`).
  """
  global _filter
  warnings.filterwarnings("ignore")
  warnings.filterwarnings("default", module=r"wave_unet_tf(\.|$)")
  os.environ.setdefault("PYTHONWARNINGS", "ignore")  # worker processes (evaluate --jobs) start quiet too
  for name in LIBRARY_LOGGERS:
    logging.getLogger(name).setLevel(logging.ERROR)
  _absl_warnings_only()
  if _filter is None:
    try:
      _filter = _StderrFilter()
    except (OSError, ValueError):  # no real fd 2 (embedded interpreters, some notebooks): nothing to filter
      _filter = False


def _absl_warnings_only():
  """absl logs INFO by default, and TensorFlow's Python code logs through it (``functional_saver.py:440]
  Sharding callback duration``); an explicit ``--verbosity`` is kept."""
  try:
    from absl import flags as absl_flags, logging as absl_logging
  except ImportError:
    return
  try:
    explicit = absl_flags.FLAGS["verbosity"].present
  except KeyError:
    explicit = False
  if not explicit:
    absl_logging.set_verbosity(absl_logging.WARNING)


@contextlib.contextmanager
def native_logs_filtered():
  """For the Python API: TensorFlow's and LiteRT's C++ log lines (`NOISE`) written while the block runs are
  dropped, everything else written to file descriptor 2 is passed on when it ends. The commands filter the
  whole process already (`quiet_terminal`); ``WAVE_UNET_DEBUG=1`` shows everything."""
  if _filter or debugging():
    yield
    return
  try:
    sys.stderr.flush()
    saved = os.dup(2)
  except (OSError, ValueError):  # no real fd 2
    yield
    return
  with tempfile.TemporaryFile() as caught:
    os.dup2(caught.fileno(), 2)
    try:
      yield
    finally:
      try:
        sys.stderr.flush()
      except (OSError, ValueError):
        pass
      os.dup2(saved, 2)
      os.close(saved)
      caught.seek(0)
      for line in caught.read().splitlines(keepends=True):
        if not NOISE.match(line.decode("utf-8", "replace")):
          os.write(2, line)


class _StderrFilter:
  """Moves file descriptor 2 onto a pipe read by a thread that drops `NOISE` lines."""

  def __init__(self):
    sys.stderr.flush()
    self._real = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    self._thread = threading.Thread(target=self._pass_on, args=(read_end,), daemon=True, name="stderr-filter")
    self._thread.start()
    python_stderr = sys.stderr
    sys.stderr = open(self._real, "w", buffering=1, encoding=getattr(python_stderr, "encoding", None) or "utf-8",
                      errors="backslashreplace", closefd=False)
    for handler in logging.getLogger().handlers:  # absl's handler (and any other) held the old stream
      stream = getattr(handler, "stream", None)
      if stream is python_stderr:
        handler.setStream(sys.stderr)
    try:
      from absl import logging as absl_logging
      absl_logging.get_absl_handler().python_handler.stream = sys.stderr
    except ImportError:
      pass
    atexit.register(self.close)

  def _pass_on(self, read_end):
    with open(read_end, "rb", buffering=0) as pipe:
      pending = b""
      while True:
        chunk = pipe.read(65536)
        if not chunk:
          break
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        for line in lines:
          self._write(line + b"\n")
      if pending:
        self._write(pending)

  def _write(self, line):
    if not NOISE.match(line.decode("utf-8", "replace")):
      os.write(self._real, line)

  def close(self):
    """Puts the real stderr back on fd 2 and passes on what is still in the pipe."""
    try:
      sys.stderr.flush()
      os.dup2(self._real, 2)  # closes the pipe's write end; the thread reads to its end
    except OSError:
      return
    self._thread.join(timeout=2)


_said = set()


def notice(message):
  """Tells the user something once per process, as the command's own line on stderr (``<command>: message``);
  not a log record, so it shows at every verbosity and never twice."""
  if message in _said:
    return
  _said.add(message)
  print(f"{os.path.basename(sys.argv[0] or 'wave_unet_tf')}: {message}", file=sys.stderr, flush=True)


DEVICES = "auto|cpu|gpu|gpu:N"


def use_device(device="auto"):
  """Runs the Keras backend on ``device``: ``auto`` (a GPU if there is one, else the CPU; TensorFlow takes
  every GPU there is), ``cpu``, ``gpu`` (an error without one) or ``gpu:N`` (that GPU only). TensorFlow's GPUs
  grow their memory as needed instead of taking it all at once. Call it before the backend's first
  operation (`wave_unet_tf.backends.devices`)."""
  from wave_unet_tf.backends import devices
  return devices.use(device)
