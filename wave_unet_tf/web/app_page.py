"""The in-browser site of ``wave-unet-app``'s model, served by the app itself under ``browser/``.

The site (`wave_unet_tf.web.site`) is built in the background once the app serves, into a temporary folder
of its own (removed when the app stops); until it is ready the address says so, and a model that cannot run
in the browser (a SavedModel, a ``.tflite`` file, a model without context) says why. Its files are sent with
the cross-origin isolation headers, so the page gets threads.
"""

import html
import os
import shutil
import tempfile
import threading

from wave_unet_tf.web.serve import ISOLATION_HEADERS

PATH = "/browser"


def available() -> bool:
  """Whether LiteRT.js is installed, so a site can be built."""
  from wave_unet_tf.web.site import WebError, litertjs_folder
  try:
    litertjs_folder()
    return True
  except WebError:
    return False


class BrowserPage:
  """An ASGI app serving the site of ``model_source``, built on a background thread into ``folder``."""

  def __init__(self, model_source: str, root: str = None):
    self.root = tempfile.mkdtemp(prefix="wave-unet-browser-", dir=root)
    self.source, self.folder = model_source, os.path.join(self.root, "site")
    self.error, self._files = None, None
    self.done = threading.Event()
    threading.Thread(target=self._build, name="browser-page", daemon=True).start()

  def _build(self):
    try:
      from wave_unet_tf.model.wave_unet import WaveUNet
      from wave_unet_tf.model_sources import load_model
      from wave_unet_tf.web.site import build_site
      model = load_model(self.source)
      if not isinstance(model, WaveUNet):
        raise ValueError(f"{os.path.basename(os.path.normpath(self.source))}: the browser page needs a Keras model "
                         f"(.keras, a training folder, a TF1 checkpoint or a catalogue name), not a "
                         f"{type(model).__name__}")
      build_site(model, self.folder, overwrite=True)
      from starlette.staticfiles import StaticFiles
      self._files = StaticFiles(directory=self.folder, html=True)
    except Exception as e:  # said on the page; the app goes on
      self.error = " ".join(str(e).split()) or type(e).__name__
    finally:
      self.done.set()

  def close(self):
    """Removes the site (once its build has stopped)."""
    self.done.wait(timeout=600)
    shutil.rmtree(self.root, ignore_errors=True)

  async def __call__(self, scope, receive, send):
    if scope["type"] != "http":
      return
    if self._files is None:
      if self.error:
        body = f"<p>The in-browser page could not be made: {html.escape(self.error)}</p>"
        status = 404
      else:
        body = "<p>The in-browser page is being made from the model (a minute or two). Reload this page soon.</p>"
        status = 503
      await send({"type": "http.response.start", "status": status,
                  "headers": [(b"content-type", b"text/html; charset=utf-8"), (b"retry-after", b"30")]})
      await send({"type": "http.response.body", "body": f"<!doctype html><title>Wave-U-Net</title>{body}".encode()})
      return

    async def with_headers(message):
      if message["type"] == "http.response.start":
        message.setdefault("headers", [])
        message["headers"] = list(message["headers"]) + [
            (name.lower().encode(), value.encode()) for name, value in ISOLATION_HEADERS.items()]
      await send(message)

    await self._files(scope, receive, with_headers)


def mount(fastapi_app, model_source: str) -> BrowserPage:
  """Serves the site of ``model_source`` at ``browser/`` of the app (the site is built in the background);
  ``close()`` removes it."""
  page = BrowserPage(model_source)
  fastapi_app.mount(PATH, page)
  return page
