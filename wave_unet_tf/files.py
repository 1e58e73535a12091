"""Writing files so that a crash, a kill or a full disk never leaves a partial file in place."""

import contextlib
import os
import tempfile


@contextlib.contextmanager
def atomic_output(path, suffix=""):
  """Yields a temporary path beside ``path``; on success it is renamed over ``path``, on failure removed.

  ``suffix`` keeps the extension writers look at (``.keras``, ``.wav``).
  """
  path = os.fspath(path)
  folder = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(folder):
    raise NotADirectoryError(f"{path}: folder {folder} does not exist")
  fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=folder)
  os.close(fd)
  try:
    yield tmp
    with open(tmp, "rb") as f:
      os.fsync(f.fileno())
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide models from a serving container's user
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def _umask():
  mask = os.umask(0)
  os.umask(mask)
  return mask


def write_text_atomically(path, text, newline=None):
  """Writes ``text`` to ``path`` through `atomic_output` (``newline`` as in `open`; "" keeps csv's \\r\\n)."""
  with atomic_output(path) as tmp:
    with open(tmp, "w", newline=newline) as f:
      f.write(text)
