"""The model cache (``$XDG_CACHE_HOME/wave_unet_tf/models``, by default ``~/.cache/wave_unet_tf/models``):
original TF1 checkpoints converted once, models downloaded once from ``http(s)://`` URLs, and models
converted once to another precision (`converted`, keyed by the model's content, the precision and window).

Every entry is written under a temporary name and renamed, so an interrupted conversion or download, or one
that fails its checksum, leaves nothing in the cache that a later run could take for a model.
"""

import hashlib
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

from wave_unet_tf.files import atomic_output, remove_stale_temporaries

MODEL_SUFFIXES = (".keras", ".tflite")  # what a URL may name
_CHUNK = 1 << 20


def cache_dir() -> str:
  """The folder of cached models (created)."""
  root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  folder = os.path.join(root, "wave_unet_tf", "models")
  os.makedirs(folder, exist_ok=True)
  remove_stale_temporaries(folder)  # what killed conversions and downloads left
  return folder


def _notice(message: str) -> None:
  print(message, file=sys.stderr, flush=True)


def checkpoint_digest(prefix: str) -> str:
  """sha256 of a TF1 checkpoint's content: its ``.index`` and ``.data-*`` files, in name order (the prefix's
  name and the folder are not part of it)."""
  folder, stem = os.path.split(os.path.abspath(prefix))
  digest = hashlib.sha256()
  for name in sorted(f for f in os.listdir(folder) if f.startswith(stem + ".")):
    if name == stem + ".index" or name.startswith(stem + ".data-"):
      digest.update(name[len(stem):].encode())
      with open(os.path.join(folder, name), "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
          digest.update(block)
  return digest.hexdigest()


def load_tf1_checkpoint(path: str, preset: str = None):
  """The `WaveUNet` of an original TF1 checkpoint (prefix or folder): its preset recognised from the
  variables (`wave_unet_tf.conversion.recognise`), or ``preset`` (then its variables must match that preset's
  exactly), converted on first use and cached by content."""
  from wave_unet_tf.conversion import recognise, tf1_checkpoint
  from wave_unet_tf.model.saving import load_keras_model, save_model

  prefix = tf1_checkpoint.resolve_checkpoint(path)
  shapes = recognise.checkpoint_shapes(prefix)
  if not shapes:  # e.g. a TF2 training checkpoint
    raise tf1_checkpoint.CheckpointMismatchError(
        f"{path}: a checkpoint without the original Wave-U-Net's variables ({tf1_checkpoint.SCOPE}...)")
  if preset is None:
    preset, note = recognise.recognise_preset(shapes, path)
    if note:
      _notice(note)
  cached = os.path.join(cache_dir(), f"tf1-{checkpoint_digest(prefix)[:32]}-{preset}.keras")
  if os.path.exists(cached):
    try:
      return load_keras_model(cached)
    except ValueError as e:  # damaged on disk since (entries are written whole): converted again
      _notice(f"{cached}: damaged cache entry ({' '.join(str(e).split())[:200]}); converting again")
      os.remove(cached)
  _notice(f"{path}: an original Wave-U-Net checkpoint of preset {preset}; converting it once into {cached}")
  model = tf1_checkpoint.convert_tf1_checkpoint(prefix, preset)
  save_model(model, cached)
  return model


def model_digest(model) -> str:
  """sha256 of a `WaveUNet`'s content: its config and every weight (shape, dtype, values) in the model's order
  (not the weights' names, which Keras numbers by how many models a process built)."""
  import json

  import numpy as np

  digest = hashlib.sha256(json.dumps(model.wave_unet_config.to_dict(), sort_keys=True).encode())
  for weight in model.weights:
    value = np.ascontiguousarray(weight.numpy())
    digest.update(f"{value.shape}:{value.dtype};".encode())
    digest.update(value.tobytes())
  return digest.hexdigest()


def converted(model, key: str, load, convert, what: str):
  """A conversion of ``model`` kept in the cache as ``lite-<content digest>-<key>.tflite``: ``load(path)`` of
  the entry, written first by ``convert(path)`` (atomically) when there is none. An entry that no longer
  loads (damaged on disk since) is said, removed and converted again."""
  cached = os.path.join(cache_dir(), f"lite-{model_digest(model)[:32]}-{key}.tflite")
  if os.path.exists(cached):
    try:
      return load(cached)
    except ValueError as e:
      _notice(f"{cached}: damaged cache entry ({' '.join(str(e).split())[:200]}); converting again")
      os.remove(cached)
  _notice(f"converting the model once to {what}, kept in {cached}")
  convert(cached)
  return load(cached)


def split_checksum(url: str):
  """``(url without fragment, expected sha256 hex or None)`` for ``...#sha256=<hex>``."""
  base, _, fragment = url.partition("#")
  if not fragment:
    return base, None
  key, _, value = fragment.partition("=")
  if key != "sha256" or len(value) != 64 or any(c not in "0123456789abcdefABCDEF" for c in value):
    raise ValueError(f"{url}: the fragment must be #sha256=<64 hex digits>")
  return base, value.lower()


def file_digest(path: str) -> str:
  """sha256 of a file's bytes (hex)."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(_CHUNK), b""):
      digest.update(block)
  return digest.hexdigest()


def download(url: str) -> str:
  """The cached copy of the model file at ``url`` (``http(s)://.../name.keras|.tflite[#sha256=<hex>]``),
  downloaded on first use with a progress bar on stderr, and checked against the checksum when given.

  Raises:
    ValueError: the URL names no model file, cannot be fetched, or its content has another checksum
      (nothing is left in the cache then).
  """
  from tqdm import tqdm

  base, expected = split_checksum(url)
  name = os.path.basename(urllib.parse.urlparse(base).path)
  if not name.endswith(MODEL_SUFFIXES):
    raise ValueError(f"{url}: not a model file URL (the path must end in {' or '.join(MODEL_SUFFIXES)})")
  key = expected or hashlib.sha256(base.encode()).hexdigest()
  cached = os.path.join(cache_dir(), f"url-{key[:32]}-{name}")
  if os.path.exists(cached):
    return cached
  try:
    with atomic_output(cached, suffix=os.path.splitext(name)[1]) as tmp:
      with urllib.request.urlopen(base, timeout=60) as response, open(tmp, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=name, file=sys.stderr,
                  leave=False) as bar:
          for block in iter(lambda: response.read(_CHUNK), b""):
            out.write(block)
            bar.update(len(block))
      if expected and file_digest(tmp) != expected:
        raise ValueError(f"{url}: the downloaded file's sha256 is {file_digest(tmp)}, not {expected}; "
                         f"not kept")
  except (urllib.error.URLError, OSError) as e:
    reason = getattr(e, "reason", None) or e
    raise ValueError(f"{url}: download failed ({reason})") from None
  return cached
