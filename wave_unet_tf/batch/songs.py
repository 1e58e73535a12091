"""One song of a catalogue on any Beam filesystem (local, ``gs://``, ``s3://``, ...): its name, where its stems
and its completion marker go, and separating it without ever leaving a partial file under a final name.

A song is separated by `Worker.separate`:

    finished? (its marker lists these outputs, settings and input, and the outputs exist) -> skipped
    input staged to a local file (remote filesystems) -> `Separator.separate_file` into a local folder
    -> each stem copied to a temporary name beside its final one and renamed -> the marker, last

so a retried bundle, a re-run or a second worker on the same song finds either the finished song or nothing
under the final names, and a run killed part-way is finished by the next.
"""

import dataclasses
import json
import os
import posixpath
import shutil
import tempfile
import threading
import uuid
from typing import Dict, Optional

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from wave_unet_tf import audio
from wave_unet_tf.separation import outputs
from wave_unet_tf.separation.separator import track_name

MARKERS = ".separated"  # under --output_dir: one JSON file per finished song, written after its stems
REPORT = "failures.jsonl"  # under --output_dir: the songs that failed in the last run, one JSON object a line
TEMPORARY = ".tmp-beam-"  # prefix of a stem or marker being written beside its final name
_COPY_BYTES = 1 << 22
_RAW = CompressionTypes.UNCOMPRESSED  # Beam would otherwise (de)compress by extension


@dataclasses.dataclass(frozen=True)
class Job:
  """What every song of a run shares; pickled with the pipeline, so the model is named, not held.

  Attributes:
    model: any model source `wave_unet_tf.load_model` takes, or a model file on a Beam filesystem.
    output_dir: the folder (on any Beam filesystem) ``options.filename`` is under.
    options: the stems and how they are written, as `wave-unet-separate`'s flags.
    offset, duration: the part of each song separated, in seconds.
    device, window_seconds, batch_size, jit_compile, compile_cache: how the model runs, as the flags.
    threads: TensorFlow's threads per worker process; 0 fits them to the worker: its cores divided by
      ``processes_per_machine``.
    processes_per_machine: SDK worker processes sharing a machine (None: one per core).
    precision: float32 (exact), float16 or int8 (`wave_unet_tf.precision`), as ``--precision``.
    model_repo: where a catalogue name's archive comes from (``--model_repo``), carried to remote workers,
      which do not inherit the launcher's environment.
  """

  model: str
  output_dir: str
  options: outputs.OutputOptions = outputs.OutputOptions()
  offset: float = 0.0
  duration: Optional[float] = None
  device: str = "auto"
  window_seconds: float = 30.0
  batch_size: int = 1
  jit_compile: bool = True
  compile_cache: Optional[str] = None
  threads: int = 0
  processes_per_machine: Optional[int] = 1
  model_repo: Optional[str] = None
  precision: str = "float32"

  def settings(self) -> dict:
    """What makes a song's outputs what they are, as its marker records it (JSON types)."""
    options = {k: v for k, v in dataclasses.asdict(self.options).items() if k != "skip_existing"}
    return json.loads(json.dumps(dict(model=self.model, options=options, offset=self.offset,
                                      duration=self.duration, precision=self.precision)))


def is_local(path: str) -> bool:
  return FileSystems.get_scheme(path) is None


def join(folder: str, relative: str) -> str:
  """``relative`` (``/``-separated) under ``folder`` on its filesystem."""
  return os.path.join(folder, relative) if is_local(folder) else FileSystems.join(folder, *relative.split("/"))


def absolute(path: str) -> str:
  return os.path.abspath(os.path.expanduser(path)) if is_local(path) else path


def glob_base(pattern: str) -> str:
  """The folder a glob's files are named below: its part before the first wildcard, up to a ``/``."""
  fixed = len(pattern)
  for wildcard in "*?[{":
    if wildcard in pattern:
      fixed = min(fixed, pattern.index(wildcard))
  return pattern[:pattern.rfind("/", 0, fixed) + 1]


def track_of(path: str, base: str) -> str:
  """A song's ``{track}``: its path below ``base`` without extensions (``base/live/a.flac`` -> ``live/a``), as
  `wave-unet-separate` names the files of a folder."""
  relative = path[len(base):] if path.startswith(base) else posixpath.basename(path)
  relative = relative.replace(os.sep, "/").lstrip("/")
  folder = posixpath.dirname(relative)
  return posixpath.join(folder, track_name(relative)) if folder else track_name(relative)


def is_song(path: str, base: str, output_dir: str) -> bool:
  """Audio files, not hidden, and not this job's own outputs (a glob may cover ``--output_dir``)."""
  relative = path[len(base):] if path.startswith(base) else posixpath.basename(path)
  parts = relative.replace(os.sep, "/").split("/")
  inside_outputs = path.startswith(output_dir.rstrip("/") + "/")
  return (path.lower().endswith(audio.AUDIO_EXTENSIONS) and not any(p.startswith(".") for p in parts)
          and not inside_outputs)


def output_key(track: str, options: outputs.OutputOptions) -> str:
  """Equal for two songs exactly when their outputs are the same files (the template without ``{track}``)."""
  return posixpath.normpath(options.filename.format(track=track, stem="\0", ext=options.codec))


class ModelError(Exception):
  """The model cannot be loaded or cannot write the stems asked for: the job's error, not a song's."""


class Worker:
  """The model of one worker process and the songs it separates, one at a time (TensorFlow already uses the
  threads it was given; a second song at once would only double the memory). The model is loaded with the
  first song that needs it: a re-run that finds every song finished starts no TensorFlow."""

  def __init__(self, job: Job):
    self.job = job
    self.settings = job.settings()
    self.separator, self.stems, self.threads = None, None, None
    self._options = dataclasses.replace(job.options, skip_existing=False)
    self._lock = threading.RLock()

  def load(self):
    """Loads the model once (`ModelError` when it cannot be, or lacks a stem asked for)."""
    with self._lock:
      if self.separator is None:
        try:
          self.separator = _load_separator(self.job)
          self.stems = self.job.options.stem_sources(self.separator.source_names)
        except Exception as e:
          self.separator = None
          raise ModelError(" ".join(str(e).split()) or type(e).__name__) from None
        self.threads = fit_threads(self.job)

  def outputs(self, track: str) -> Dict[str, str]:
    """``{stem: final path}`` of a song."""
    self.load()
    relative = self.job.options.paths("", track, self.stems)
    return {stem: join(self.job.output_dir, path.replace(os.sep, "/")) for stem, path in relative.items()}

  def marker(self, track: str) -> str:
    return join(self.job.output_dir, f"{MARKERS}/{track}.json")

  def separate(self, path: str, track: str) -> Optional[float]:
    """Separates the song at ``path`` into its outputs; returns its seconds of audio, or None when it was
    finished already. Raises `AudioError`/`ValueError`/`OSError` naming ``path``, `ModelError`."""
    marker = self.marker(track)
    if self._marked_finished(path, marker):
      return None
    finals = self.outputs(track)
    if self.job.options.skip_existing and all(FileSystems.exists(p) for p in finals.values()):
      return None
    with tempfile.TemporaryDirectory(prefix="wave-unet-beam-") as stage:
      local = path if is_local(path) else _stage_input(path, stage)
      try:
        with self._lock:
          written, seconds = self.separator.separate_file(
              local, os.path.join(stage, "stems"), options=self._options, track=track, offset=self.job.offset,
              duration=self.job.duration)
      except (ValueError, OSError, RuntimeError) as e:
        if local == path:
          raise
        raise _naming(e, local, path) from None
      for stem, final in finals.items():
        _publish(written[stem], final)
    record = dict(input=path, outputs=finals, seconds=round(seconds, 3), settings=self.settings)
    _publish_bytes(json.dumps(record, indent=1).encode(), marker)  # last: the song is finished
    return seconds

  def _marked_finished(self, path, marker):
    """The marker names this input, these settings, and outputs that are all there."""
    try:
      if not FileSystems.exists(marker):
        return False
      with FileSystems.open(marker, compression_type=_RAW) as f:
        record = json.loads(f.read())
    except (OSError, ValueError):  # unreadable: the song is separated again, the marker rewritten
      return False
    return (isinstance(record, dict) and record.get("input") == path and record.get("settings") == self.settings
            and isinstance(record.get("outputs"), dict) and record["outputs"]
            and all(FileSystems.exists(p) for p in record["outputs"].values()))


def _naming(error, local, path):
  """``error`` of the same kind, naming the song as the user named it instead of its local copy."""
  message = str(error).replace(local, path)
  for kind in (audio.AudioError, ValueError, OSError):
    if isinstance(error, kind):
      return kind(message)
  return RuntimeError(message)


def _load_separator(job):
  """The job's `Separator`, TensorFlow started as the commands start it, with `fit_threads` threads."""
  from wave_unet_tf import runtime
  runtime.configure(compile_cache=job.compile_cache if job.jit_compile else None)
  import tensorflow as tf
  threads = fit_threads(job)
  try:
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
  except RuntimeError:  # TensorFlow already ran in this process (an in-process runner): its threads stay
    pass
  from wave_unet_tf.separation import Separator
  runtime.use_device(job.device)
  if job.model_repo:
    from wave_unet_tf import pretrained
    os.environ[pretrained.REPO_ENV] = job.model_repo
  with _local_model(job.model) as model:
    return Separator(model, window_seconds=job.window_seconds, batch_size=job.batch_size,
                     jit_compile=job.jit_compile, precision=job.precision)


def fit_threads(job: Job) -> int:
  """TensorFlow threads for one worker process: ``job.threads``, or this machine's cores shared among the
  worker processes on it."""
  if job.threads:
    return job.threads
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
  return max(1, cores // (job.processes_per_machine or cores))


class _local_model:
  """A model file on a Beam filesystem (``gs://bucket/m.keras``) copied to a local temporary file while it
  loads; any other model source as it is."""

  def __init__(self, model):
    self.model, self._folder = model, None

  def __enter__(self):
    scheme = FileSystems.get_scheme(self.model)
    if scheme is None or scheme in ("http", "https", "hf"):
      return self.model
    self._folder = tempfile.mkdtemp(prefix="wave-unet-beam-model-")
    return _stage_input(self.model, self._folder)

  def __exit__(self, *exc):
    if self._folder:
      shutil.rmtree(self._folder, ignore_errors=True)


def _stage_input(path, folder):
  """Copies a remote file into ``folder``, keeping its name (decoders look at the extension)."""
  local = os.path.join(folder, posixpath.basename(path) or "input")
  try:
    with FileSystems.open(path, compression_type=_RAW) as source, open(local, "wb") as target:
      shutil.copyfileobj(source, target, _COPY_BYTES)
  except (OSError, ValueError) as e:
    raise OSError(f"{path}: cannot read it ({' '.join(str(e).split())})") from None
  return local


def _publish(local, final):
  with open(local, "rb") as source:
    _publish_stream(source, final)


def _publish_bytes(data, final):
  import io
  _publish_stream(io.BytesIO(data), final)


def _publish_stream(source, final):
  """Writes ``source`` to a temporary name beside ``final`` and renames it there: the final name only ever
  holds a whole file (on object stores the rename is a copy of a finished object). Temporaries a killed
  attempt left for the same file are removed first."""
  folder, name = final.rsplit("/", 1) if "/" in final else ("", final)
  _remove_stale_temporaries(folder, name)
  tmp = f"{folder}/{TEMPORARY}{uuid.uuid4().hex[:12]}-{name}"
  try:
    with FileSystems.create(tmp, compression_type=_RAW) as target:
      shutil.copyfileobj(source, target, _COPY_BYTES)
    FileSystems.rename([tmp], [final])
  except BaseException as e:
    _delete_quietly(tmp)
    if isinstance(e, Exception):
      raise OSError(f"{final}: cannot write it ({reason(e)})") from None
    raise


def _delete_quietly(path):
  try:
    FileSystems.delete([path])
  except Exception:  # never created, or renamed already
    pass


def _remove_stale_temporaries(folder, name):
  try:
    matches = FileSystems.match([f"{folder}/{TEMPORARY}*-{_escape_glob(name)}"])[0].metadata_list
    if matches:
      FileSystems.delete([m.path for m in matches])
  except Exception:  # best effort: they are never under a final name
    pass


def _escape_glob(name):
  return "".join(f"[{c}]" if c in "*?[]{}" else c for c in name)


def reason(error):
  """The innermost reason of a Beam I/O error (``BeamIOError`` wraps a dict of the per-file exceptions)."""
  causes = getattr(error, "exception_details", None)
  if causes:
    error = next(iter(causes.values()))
    if isinstance(error, OSError) and error.args and isinstance(error.args[0], OSError):
      error = error.args[0]
  return getattr(error, "strerror", None) or " ".join(str(error).split())
