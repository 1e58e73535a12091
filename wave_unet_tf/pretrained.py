"""The paper's pretrained models by name (`wave_unet_tf.catalogue`): the original project's release archive
downloaded once into the model cache, the named checkpoint folder extracted from it safely, and the checkpoint
converted once (`model_cache.load_tf1_checkpoint`, keyed by content).

The cache (``model_cache.cache_dir()/released/``):

  models.zip           the archive, whole; a download runs into ``models.zip.part`` and is renamed when complete
  models.zip.part      a download cut short or killed, resumed with an HTTP Range request by the next run
  models.zip.sha256    the archive's sha256 as first downloaded, where the catalogue has none to check against
  full_44KHz/ ...      checkpoint folders extracted from it (into a temporary folder, renamed when whole)

A model whose folder is there needs no network at all. ``WAVE_UNET_MODEL_REPO`` (or ``--model_repo``)
replaces the catalogue's URL: another URL of the archive, a local copy of it, or a local folder holding it or
its extracted folders (used in place). Downloads go through ``urllib``, so ``HTTPS_PROXY``/``NO_PROXY`` apply.
"""

import contextlib
import datetime
import fcntl
import http.client
import json
import os
import re
import shutil
import stat
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import ssl
import zlib
from typing import Optional

from wave_unet_tf import catalogue, model_cache
from wave_unet_tf.files import (DiskFullError, is_disk_full, remove_stale_temporaries, reporting_full_disk,
                                write_text_atomically)

REPO_ENV = "WAVE_UNET_MODEL_REPO"
TIMEOUT_SECONDS = 30  # to connect, and for each read: a network that drops packets fails instead of hanging
MAX_FOLDER_BYTES = 2 << 30  # one extracted checkpoint folder (the released ones hold ~125 MB): no zip bomb
MAX_MEMBERS = 10000
_CHUNK = 1 << 20
# What a network that is down, slow or cut off raises (all but HTTP errors, which have a status to tell)
_NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError, ssl.SSLError)


class ModelRepoError(ValueError):
  """A named model cannot be had: the message is one line saying why and what to do."""


def repo() -> Optional[str]:
  """Where named models come from instead of the catalogue's URL (``$WAVE_UNET_MODEL_REPO``), or None."""
  return os.environ.get(REPO_ENV) or None


def released_dir() -> str:
  """The cache folder of the release archive and the checkpoint folders extracted from it (created)."""
  folder = os.path.join(model_cache.cache_dir(), "released")
  os.makedirs(folder, exist_ok=True)
  remove_stale_temporaries(folder)  # what a killed extraction or record write left
  return folder


def _has_checkpoint(folder: str) -> bool:
  return os.path.isdir(folder) and any(f.endswith(".index") for f in os.listdir(folder))


def cached_folder(name: str) -> Optional[str]:
  """The extracted checkpoint folder of a named model in the cache, or None."""
  folder = os.path.join(released_dir(), catalogue.get(name).folder)
  return folder if _has_checkpoint(folder) else None


def cached_archive(name: str) -> Optional[str]:
  """The downloaded archive holding a named model, or None."""
  path = os.path.join(released_dir(), catalogue.get(name).archive)
  return path if os.path.isfile(path) else None


def load(name: str, source: str = None):
  """The `WaveUNet` of a named model (canonical or original name), fetched and converted on first use.
  ``source``: instead of ``$WAVE_UNET_MODEL_REPO`` and the catalogue's URL."""
  from wave_unet_tf.conversion.tf1_checkpoint import CheckpointMismatchError

  entry = catalogue.get(name)
  folder = fetch(name, source)
  try:
    return model_cache.load_tf1_checkpoint(folder, preset=entry.preset)
  except CheckpointMismatchError as e:  # variables that do not match the preset: not the released model, not kept
    cached = os.path.dirname(os.path.abspath(folder)) == released_dir()
    if cached:
      shutil.rmtree(folder, ignore_errors=True)
      archive = cached_archive(name)
      if archive:
        _remove(archive, archive + ".sha256")
    raise ModelRepoError(f"{name}: {' '.join(str(e).split())}; not the released {entry.preset} checkpoint"
                         + (", removed from the cache" if cached else "")) from None


def fetch(name: str, source: str = None, progress: bool = True) -> str:
  """The local checkpoint folder of a named model: from the cache, else from ``source`` (default:
  ``$WAVE_UNET_MODEL_REPO``, else the catalogue's URL), downloaded and extracted into the cache.

  Raises:
    ModelRepoError: one line naming what failed (the URL, the cache folder and the ways out when offline).
  """
  entry = catalogue.get(name)
  found = cached_folder(name)
  if found:
    return found
  source = source or repo()
  if source and not source.startswith(("http://", "https://")):
    return _from_local(entry, source)
  with _locked(released_dir()):
    found = cached_folder(name)  # fetched by another process meanwhile
    if found:
      return found
    url, expected = model_cache.split_checksum(source or entry.url)
    expected = expected or entry.sha256
    archive = cached_archive(name)
    if archive:
      return _extract(archive, entry, downloaded=True)
    archive, digest = _download(entry, url, expected, progress)
    folder = _extract(archive, entry, downloaded=True)
    if not expected:
      _record(entry, url, digest)
    return folder


def _from_local(entry, source: str) -> str:
  """A named model's folder from a local archive or a folder holding it or its extracted folders."""
  path, expected = model_cache.split_checksum(os.path.expanduser(source))
  expected = expected or entry.sha256
  if os.path.isdir(path):
    found = _find_folder(path, entry.folder)
    if found:
      return found  # used in place: nothing to copy
    archives = [os.path.join(path, f) for f in sorted(os.listdir(path)) if f == entry.archive] or \
               [os.path.join(path, f) for f in sorted(os.listdir(path)) if f.lower().endswith(".zip")]
    if not archives:
      raise ModelRepoError(f"model repo {source} (--model_repo, ${REPO_ENV}): this folder holds neither "
                           f"{entry.archive} nor a folder {entry.folder}/ with a checkpoint ({entry.name})")
    path = archives[0]
  elif not os.path.isfile(path):
    raise ModelRepoError(f"model repo {source} (--model_repo, ${REPO_ENV}): no such file or folder (give the "
                         f"release's {entry.archive}, a folder holding it, or a URL)")
  if expected:
    digest = model_cache.file_digest(path)
    if digest != expected:
      raise ModelRepoError(f"{path}: sha256 {digest}, not the released archive's {expected}; refused")
  with _locked(released_dir()):
    return cached_folder(entry.name) or _extract(path, entry, downloaded=False)


def _find_folder(root: str, folder: str) -> Optional[str]:
  """The shallowest folder named ``folder`` below ``root`` that holds a checkpoint, or None."""
  for parent, subfolders, _ in os.walk(root):
    subfolders.sort()
    if os.path.basename(parent) == folder and _has_checkpoint(parent):
      return parent
  return None


@contextlib.contextmanager
def _locked(folder: str):
  """One process at a time downloads and extracts into ``folder``; a killed one's lock goes with it."""
  with open(os.path.join(folder, ".lock"), "a") as lock:
    try:
      fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      print(f"waiting for another process fetching models into {folder}", file=sys.stderr, flush=True)
      fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)


def _offline(entry, url: str, reason) -> ModelRepoError:
  return ModelRepoError(
      f"{entry.name}: cannot download {url} ({reason}) into the model cache {released_dir()}; either download "
      f"{entry.archive} by hand and set {REPO_ENV} (or --model_repo) to it or to its folder, or pass --model "
      f"PATH (a .keras file or a checkpoint folder)")


def _download(entry, url: str, expected: Optional[str], progress: bool) -> str:
  """Downloads the archive into the cache under a temporary name (resuming one left by an earlier run),
  checks it, and renames it; returns ``(path, sha256)``."""
  from tqdm import tqdm

  target = os.path.join(released_dir(), entry.archive)
  part, validator_file = target + ".part", target + ".part.json"
  offset = os.path.getsize(part) if os.path.exists(part) else 0
  validator = None
  if offset and os.path.exists(validator_file):
    with open(validator_file) as f:
      validator = json.load(f).get("validator")
  request = urllib.request.Request(url, headers={"User-Agent": "wave-unet-tf"})
  if offset:
    request.add_header("Range", f"bytes={offset}-")
    if validator:  # the server sends the whole file instead if it changed since
      request.add_header("If-Range", validator)
  received, total = offset, None
  try:
    # A new opener per download: its ProxyHandler reads HTTPS_PROXY/NO_PROXY now (urlopen's keeps the first).
    with urllib.request.build_opener().open(request, timeout=TIMEOUT_SECONDS) as response:
      length = int(response.headers.get("Content-Length") or 0) or None
      resumed = offset and response.status == 206 and \
          (response.headers.get("Content-Range") or "").startswith(f"bytes {offset}-")
      if not resumed:
        offset = received = 0
        validator = response.headers.get("ETag") or response.headers.get("Last-Modified")
        with open(validator_file, "w") as f:
          json.dump({"url": url, "validator": validator}, f)
      elif progress:
        print(f"resuming the download of {entry.archive} at {offset / 1e6:.1f} MB", file=sys.stderr, flush=True)
      total = offset + length if length else None
      with open(part, "ab" if resumed else "wb") as out, \
          tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=entry.archive,
               file=sys.stderr, leave=False, disable=not progress) as bar:
        for block in iter(lambda: response.read1(_CHUNK), b""):  # what has arrived, not a whole chunk
          out.write(block)
          out.flush()  # on disk as it arrives: what a killed run leaves is what it received
          received += len(block)
          bar.update(len(block))
  except urllib.error.HTTPError as e:
    if e.code == 416 and offset:  # the part is no prefix of the file served now: start again
      _remove(part, validator_file)
      return _download(entry, url, expected, progress)
    raise _offline(entry, url, f"HTTP {e.code} {e.reason}") from None
  except _NETWORK_ERRORS as e:
    reason = " ".join(str(getattr(e, "reason", None) or e).split()) or type(e).__name__
    if received > offset:
      raise _cut_short(entry, url, part, received, total, reason) from None
    raise _offline(entry, url, reason) from None
  except OSError as e:  # writing the part
    if is_disk_full(e, released_dir()):
      raise DiskFullError(target) from None
    raise
  if total is not None and received != total:
    raise _cut_short(entry, url, part, received, total, "connection closed")
  return _accept(entry, url, part, validator_file, target, expected)


def _record(entry, url: str, digest: str) -> None:
  """Without a sha256 to check against, the archive's is said once and recorded beside it, so that a later
  download of other bytes is said."""
  record = os.path.join(released_dir(), entry.archive + ".sha256")
  before = None
  if os.path.exists(record):
    with open(record) as f:
      before = (f.read().split() or [None])[0]
  if before and before != digest:
    print(f"{entry.archive}: sha256 {digest} differs from {before}, recorded in {record} when it was first "
          f"downloaded: the archive at {url} has changed", file=sys.stderr, flush=True)
  elif not before:
    print(f"{entry.archive}: sha256 {digest} (the catalogue has none to check against: each checkpoint must "
          f"match its preset's variables; recorded in {record})", file=sys.stderr, flush=True)
  write_text_atomically(record, f"{digest}  {url}  {datetime.date.today().isoformat()}\n")


def _cut_short(entry, url, part, received, total, reason) -> ModelRepoError:
  of = f" of {total / 1e6:.1f}" if total else ""
  return ModelRepoError(f"{entry.name}: the download of {url} was cut short at {received / 1e6:.1f}{of} MB "
                        f"({reason}); run again to resume it (kept in {part})")


def _remove(*paths):
  for path in paths:
    with contextlib.suppress(FileNotFoundError):
      os.remove(path)


def _accept(entry, url, part, validator_file, target, expected):
  """Checks a whole download against the expected sha256 and renames it into place: ``(path, sha256)``."""
  digest = model_cache.file_digest(part)
  if expected and digest != expected:
    _remove(part, validator_file)
    raise ModelRepoError(f"{entry.name}: {url}: the archive's sha256 is {digest}, not {expected}; not kept")
  os.replace(part, target)
  _remove(validator_file)
  return target, digest


def _unsafe(info: zipfile.ZipInfo) -> Optional[str]:
  """Why an archive member may not be extracted (a path out of its folder, a link), or None."""
  name = info.filename.replace("\\", "/")
  if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
    return "an absolute path"
  if ".." in name.split("/"):
    return "a path with '..'"
  if stat.S_ISLNK(info.external_attr >> 16):
    return "a link"
  return None


def _extract(archive: str, entry, downloaded: bool) -> str:
  """Extracts the catalogue's folder for ``entry`` from ``archive`` (found at any depth) into the cache.
  An archive with unsafe members, without the folder or damaged is refused, and not kept if ``downloaded``."""
  destination = os.path.join(released_dir(), entry.folder)

  def refuse(why):
    if downloaded:
      _remove(archive)
    kept = "; removed, run again to download it again" if downloaded else ""
    return ModelRepoError(f"{entry.name}: {archive}: {why}{kept}")

  try:
    with zipfile.ZipFile(archive) as z:
      members = z.infolist()
      if len(members) > MAX_MEMBERS:
        raise refuse(f"{len(members)} members, more than a release holds ({MAX_MEMBERS}); refused")
      for info in members:
        why = _unsafe(info)
        if why:
          raise refuse(f"member {info.filename!r} is {why}; refused")
      prefixes = sorted({"/".join(parts[:i + 1]) + "/" for parts in (m.filename.split("/") for m in members)
                         for i, part in enumerate(parts[:-1]) if part == entry.folder}, key=lambda p: p.count("/"))
      taken = [m for m in members if prefixes and m.filename.startswith(prefixes[0]) and not m.is_dir()]
      if not taken:
        raise refuse(f"no folder {entry.folder}/ in the archive")
      declared = sum(m.file_size for m in taken)
      if declared > MAX_FOLDER_BYTES:
        raise refuse(f"{entry.folder}/ would take {declared / 1e6:.1f} MB, more than a checkpoint does "
                     f"({MAX_FOLDER_BYTES / 1e6:.1f} MB); refused")
      scratch = tempfile.mkdtemp(prefix=".tmp-", dir=released_dir())
      try:
        with reporting_full_disk(destination):
          _write_members(z, taken, prefixes[0], scratch, lambda: refuse(
              f"{entry.folder}/ expands beyond {MAX_FOLDER_BYTES / 1e6:.1f} MB; refused"))
        if not _has_checkpoint(scratch):
          raise refuse(f"{entry.folder}/ holds no checkpoint (*.index)")
        if os.path.lexists(destination):  # not a whole extraction (those are renamed into place)
          shutil.rmtree(destination, ignore_errors=True)
        os.replace(scratch, destination)
      finally:
        shutil.rmtree(scratch, ignore_errors=True)
  except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as e:
    raise refuse(f"damaged archive ({' '.join(str(e).split()) or type(e).__name__})") from None
  print(f"{entry.name}: extracted {entry.folder}/ from {archive} into {destination}", file=sys.stderr, flush=True)
  return destination


def _write_members(z: zipfile.ZipFile, members, prefix: str, folder: str, too_large) -> None:
  """Writes ``members`` (named below ``prefix``) into ``folder``; raises ``too_large()`` once they expand beyond
  `MAX_FOLDER_BYTES`, whatever sizes the archive's directory declares."""
  written = 0
  for info in members:
    path = os.path.join(folder, *info.filename[len(prefix):].split("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with z.open(info) as source, open(path, "wb") as out:
      for block in iter(lambda: source.read(_CHUNK), b""):
        written += len(block)
        if written > MAX_FOLDER_BYTES:
          raise too_large()
        out.write(block)


def listing():
  """Per catalogue model: ``(entry, cached checkpoint folder or None, cached archive or None)``."""
  return [(entry, cached_folder(entry.name), cached_archive(entry.name)) for entry in catalogue.ENTRIES]
