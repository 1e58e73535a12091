"""One training process per run folder: ``<model_dir>/train.lock``, held with ``flock`` while it trains.

The kernel drops an ``flock`` when its process dies, so a lock file left by a killed run never blocks the next
one; the file only says who holds it (host, PID, start time) for the refusal message.
"""

import contextlib
import datetime
import fcntl
import os
import socket

from wave_unet_tf.training.run_folder import RunFolderError

LOCK_FILE = "train.lock"


class BusyFolderError(ValueError):
  """Another process trains in this --model_dir."""


@contextlib.contextmanager
def hold(model_dir: str):
  """Holds ``model_dir``'s lock for the ``with`` block (creating the folder); `BusyFolderError` names the
  process that holds it."""
  try:
    os.makedirs(model_dir, exist_ok=True)
  except OSError as e:
    raise RunFolderError(f"--model_dir={model_dir}: cannot create it ({e.strerror})") from None
  path = os.path.join(model_dir, LOCK_FILE)
  fd = _acquire(path, model_dir)
  try:
    since = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    os.ftruncate(fd, 0)
    os.write(fd, f"host={socket.gethostname()}\npid={os.getpid()}\nsince={since}\n".encode())
    yield path
  finally:
    # Unlinked while still locked: a process that opened the old file finds it gone and opens a new one.
    with contextlib.suppress(OSError):
      os.remove(path)
    os.close(fd)


def _acquire(path, model_dir):
  while True:
    try:
      fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
      raise RunFolderError(f"--model_dir={model_dir}: cannot create {path} ({e.strerror})") from None
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = _read(fd)
      os.close(fd)
      raise BusyFolderError(f"--model_dir={model_dir} is in use by another training run ({holder}; {path}); "
                            f"wait for it to end or stop it, or use another --model_dir") from None
    # The holder we waited on may have removed the file before we locked it: lock the file that is there.
    try:
      if os.fstat(fd).st_ino == os.stat(path).st_ino:
        return fd
    except FileNotFoundError:
      pass
    os.close(fd)


def _read(fd):
  """``PID <pid> on host <host>, since <time>`` from the holder's file."""
  try:
    text = os.pread(fd, 512, 0).decode(errors="replace")
  except OSError:
    text = ""
  fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
  if "pid" not in fields:
    return "one that has not written its host and PID yet"
  return f"PID {fields['pid']} on host {fields.get('host', '?')}, since {fields.get('since', '?')}"
