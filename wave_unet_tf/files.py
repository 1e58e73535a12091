"""Writing files so that a crash, a kill or a full disk never leaves a partial file in place."""

import contextlib
import errno
import os
import shutil
import tempfile
import time

_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
STALE_SECONDS = 6 * 3600  # a temporary file untouched this long belongs to a killed process
_ALMOST_FULL = 1 << 20  # bytes free below which a writer's unexplained failure is taken for a full disk


class DiskFullError(OSError):
  """No space left (or a quota reached) while writing a file; the message names the file meant to be written."""

  def __init__(self, path):
    super().__init__(f"{path}: no space left on device; nothing was written there (free some space and run again)")
    self.errno = errno.ENOSPC


def is_disk_full(error: BaseException, folder: str = None) -> bool:
  """Whether ``error``, raised while writing into ``folder``, comes from a full disk: an OSError's errno, the
  text of errors from libraries that wrap it (TensorFlow's file system), or, for errors that carry no reason
  (libsndfile's "System error."), a folder with next to no space left."""
  if isinstance(error, OSError) and error.errno is not None:
    return error.errno in _NO_SPACE
  if any(text in str(error) for text in ("No space left on device", "Disk quota exceeded")):
    return True
  if folder is None:
    return False
  try:
    usage = os.statvfs(folder)
  except OSError:
    return False
  return usage.f_bavail * usage.f_frsize < _ALMOST_FULL


@contextlib.contextmanager
def reporting_full_disk(path):
  """Turns a full disk while writing ``path`` (however the writer reports it) into one `DiskFullError` naming
  ``path``; the outermost such block names what the user asked for, not a temporary file inside it."""
  path = os.fspath(path)
  try:
    yield
  except Exception as e:
    if is_disk_full(e, os.path.dirname(os.path.abspath(path))):
      raise DiskFullError(path) from None
    raise


@contextlib.contextmanager
def atomic_output(path, suffix=""):
  """Yields a temporary path beside ``path``; on success it is renamed over ``path``, on failure removed.
  A full disk, however the writer reports it, is a `DiskFullError` naming ``path``.

  ``suffix`` keeps the extension writers look at (``.keras``, ``.wav``).
  """
  path = os.fspath(path)
  folder = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(folder):
    raise NotADirectoryError(f"{path}: folder {folder} does not exist")
  with reporting_full_disk(path):
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=folder)
  os.close(fd)
  try:
    with reporting_full_disk(path):
      yield tmp
      with open(tmp, "rb") as f:
        os.fsync(f.fileno())
      os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide models from a serving container's user
      os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def remove_stale_temporaries(folder, older_than_seconds=STALE_SECONDS):
  """Removes the temporary files (`atomic_output`'s) and folders (``tempfile.mkdtemp(prefix=".tmp-")``) in
  ``folder`` that a killed process left behind: those not touched for ``older_than_seconds`` (a live
  writer's are younger)."""
  now = time.time()
  try:
    entries = list(os.scandir(folder))
  except OSError:
    return
  for entry in entries:
    try:
      if entry.name.startswith(".tmp-") and now - entry.stat().st_mtime > older_than_seconds:
        if entry.is_dir(follow_symlinks=False):
          shutil.rmtree(entry.path, ignore_errors=True)
        else:
          os.remove(entry.path)
    except OSError:  # removed by another process meanwhile
      pass


def _umask():
  mask = os.umask(0)
  os.umask(mask)
  return mask


def write_text_atomically(path, text, newline=None):
  """Writes ``text`` to ``path`` through `atomic_output` (``newline`` as in `open`; "" keeps csv's \\r\\n)."""
  with atomic_output(path) as tmp:
    with open(tmp, "w", newline=newline) as f:
      f.write(text)
