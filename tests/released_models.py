"""The original project's release archive as the tests build and serve it (tests/test_pretrained.py,
tests/test_notebooks.py): ``models.zip`` with one folder per model, each a TF1 checkpoint of the real model's
variable names and shapes (the manifests in tests/fixtures/original_tf1) with random values, saved as the
original's Training.py saves (``tf.compat.v1.train.Saver`` over every global variable: the model, the Adam
slots, the beta powers and ``global_step``; ``<name>-<step>`` prefixes, a ``checkpoint`` file naming the paths
of the machine that saved it, a ``.meta`` graph). Served by `Server`, an HTTP server on 127.0.0.1 in a thread
that honours Range requests and can cut a response short or hold it."""

import functools
import hashlib
import http.server
import json
import os
import pathlib
import re
import threading
import urllib.parse
import zipfile

import numpy as np

from conftest import ORIGINAL_TF1

# name -> (the original's name, also its folder in the archive; the global step of its prefix; its manifest)
RELEASED = {"M5-HighSR": ("full_44KHz", 236118, "M5_full"),
            "M4": ("baseline_stereo", 186093, "M4_baseline_stereo"),
            "M6": ("full_multi_instrument", 134067, "M6_full_multi_instrument")}


def write_original_checkpoint(folder, name, step, manifest, seed=0):
  """``folder/<name>-<step>.*`` as the original's ``Training.py`` writes it; returns the prefix."""
  import tensorflow as tf

  variables = json.loads((ORIGINAL_TF1 / f"{manifest}.variables.json").read_text())["variables"]
  os.makedirs(folder, exist_ok=True)
  graph = tf.Graph()
  with graph.as_default():
    created = []
    for index, (variable, shape) in enumerate(variables):
      if variable == "global_step":
        initial = tf.constant(step, tf.int64)
      elif variable.startswith("separator/"):  # the model: random, biases non-zero too
        initial = tf.random.normal(shape, stddev=0.05, seed=seed * 1000 + index)
      elif variable.endswith("_power"):
        initial = tf.constant(0.5, tf.float32)
      else:  # Adam's slots: the converter skips them, so their values do not matter (zeros keep the zip light)
        initial = tf.zeros(shape, tf.float32)
      created.append(tf.compat.v1.Variable(initial, name=variable))
    saver = tf.compat.v1.train.Saver(created, write_version=tf.compat.v1.train.SaverDef.V2)
    with tf.compat.v1.Session(graph=graph) as session:
      session.run(tf.compat.v1.global_variables_initializer())
      return saver.save(session, os.path.join(folder, name), global_step=step)


def write_release(root):
  """``root/models.zip`` in the release layout (one top-level folder per model) and ``root/checkpoints/`` with
  the same folders; returns ``(archive path, {name: checkpoint prefix})``."""
  root = pathlib.Path(root)
  prefixes = {}
  for seed, (name, (folder, step, manifest)) in enumerate(RELEASED.items()):
    prefixes[name] = write_original_checkpoint(root / "checkpoints" / folder, folder, step, manifest, seed)
  archive = root / "models.zip"
  zip_folders(archive, root / "checkpoints", compression=zipfile.ZIP_STORED)
  return archive, prefixes


def zip_folders(archive, root, compression=zipfile.ZIP_DEFLATED, prefix=""):
  """Every file below ``root`` into ``archive``, named by its path below ``root`` (under ``prefix``)."""
  with zipfile.ZipFile(archive, "w", compression) as z:
    for path in sorted(pathlib.Path(root).rglob("*")):
      if path.is_file():
        z.write(path, prefix + path.relative_to(root).as_posix())
  return archive


def write_small_release(root, size=300_000, seed=0):
  """A ``models.zip`` in the release layout whose checkpoint files are random bytes (``size`` per data file):
  for what does not read the checkpoints (download, resume, extraction). Returns the archive's path."""
  rng = np.random.default_rng(seed)
  root = pathlib.Path(root)
  for folder, step, _ in RELEASED.values():
    directory = root / "small" / folder
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{folder}-{step}.index").write_bytes(rng.bytes(1000))
    (directory / f"{folder}-{step}.data-00000-of-00001").write_bytes(rng.bytes(size))
    (directory / "checkpoint").write_text(f'model_checkpoint_path: "/home/daniel/{folder}/{folder}-{step}"\n')
  return zip_folders(root / "models.zip", root / "small")


def sha256(path):
  return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


class Server:
  """An HTTP server on 127.0.0.1 in a thread serving the files of ``folder``, with Range requests (``bytes=N-``,
  If-Range on the ETag), recording ``(path, Range header)`` per request. Also a proxy: a request for an
  absolute URL serves the file of the URL's path.

  ``cut_after``: the next response sends this many bytes of its body, then closes the connection.
  ``hold_after``: the next response sends this many bytes, sets ``holding`` and waits for ``release``.
  """

  CHUNK = 65536

  def __init__(self, folder):
    self.folder = pathlib.Path(folder)
    self.requests = []
    self.cut_after = self.hold_after = None
    self.holding, self.release = threading.Event(), threading.Event()
    self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, self))
    self.httpd.daemon_threads = True
    self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
    self.thread.start()
    self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

  def close(self):
    self.release.set()
    self.httpd.shutdown()
    self.httpd.server_close()


class _Handler(http.server.BaseHTTPRequestHandler):
  protocol_version = "HTTP/1.1"

  def __init__(self, server, *args, **kwargs):
    self.owner = server
    super().__init__(*args, **kwargs)

  def log_message(self, *args):
    pass

  def do_GET(self):
    owner = self.owner
    owner.requests.append((self.path, self.headers.get("Range")))
    path = owner.folder / urllib.parse.unquote(urllib.parse.urlparse(self.path).path).lstrip("/")
    if not path.is_file():
      self.send_error(404)
      return
    size = path.stat().st_size
    etag = f'"{size}-{path.stat().st_mtime_ns}"'
    start = 0
    wanted = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
    if wanted and self.headers.get("If-Range") in (None, etag):
      start = int(wanted.group(1))
      if start >= size:
        self.send_response(416)
        self.send_header("Content-Range", f"bytes */{size}")
        self.send_header("Content-Length", "0")
        self.end_headers()
        return
      self.send_response(206)
      self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
    else:
      self.send_response(200)
    self.send_header("Content-Length", str(size - start))
    self.send_header("ETag", etag)
    self.send_header("Accept-Ranges", "bytes")
    self.end_headers()
    cut, hold = owner.cut_after, owner.hold_after
    owner.cut_after = owner.hold_after = None
    with open(path, "rb") as f:
      f.seek(start)
      if cut is not None:
        self.wfile.write(f.read(cut))
        self.wfile.flush()
        self.close_connection = True
        return
      try:
        if hold is not None:
          self.wfile.write(f.read(hold))
          self.wfile.flush()
          owner.holding.set()
          owner.release.wait()
        for block in iter(lambda: f.read(Server.CHUNK), b""):
          self.wfile.write(block)
      except (BrokenPipeError, ConnectionResetError):  # the client was killed
        self.close_connection = True
