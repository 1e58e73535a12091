"""Serves a site of ``wave-unet-export --web`` on this machine, with the headers that give its page threads.

  python -m wave_unet_tf.web.serve site/ [--port 8000] [--host 127.0.0.1] [--no-isolation]

Any static host serves the site; this one adds ``Cross-Origin-Opener-Policy: same-origin`` and
``Cross-Origin-Embedder-Policy: require-corp`` (the page is then cross-origin isolated, so LiteRT.js may use
threads). ``--no-isolation`` leaves them out, as a plain host would (one thread).
"""

import argparse
import functools
import http.server
import os
import sys
import threading

ISOLATION_HEADERS = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp"}


class SiteHandler(http.server.SimpleHTTPRequestHandler):
  """Static files with the right types for modules and WebAssembly, the isolation headers when asked for,
  and no log line per request."""

  isolation = True
  extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".js": "text/javascript",
                    ".wasm": "application/wasm", ".json": "application/json", ".tflite": "application/octet-stream"}

  def end_headers(self):
    if self.isolation:
      for name, value in ISOLATION_HEADERS.items():
        self.send_header(name, value)
    self.send_header("Cache-Control", "no-cache")
    super().end_headers()

  def log_message(self, format, *args):
    pass


def make_server(directory: str, host: str = "127.0.0.1", port: int = 0, isolation: bool = True):
  """An HTTP server of ``directory`` (not started): ``server.server_address`` has its port."""
  handler = type("Handler", (SiteHandler,), {"isolation": isolation})
  return http.server.ThreadingHTTPServer((host, port), functools.partial(handler, directory=directory))


def serve_in_background(directory: str, host: str = "127.0.0.1", port: int = 0, isolation: bool = True):
  """Starts `make_server` on a daemon thread; returns the server (``shutdown()`` stops it)."""
  server = make_server(directory, host, port, isolation)
  threading.Thread(target=server.serve_forever, daemon=True).start()
  return server


def main(argv=None):
  parser = argparse.ArgumentParser(prog="python -m wave_unet_tf.web.serve", description=__doc__.split("\n")[0])
  parser.add_argument("directory", help="the site (wave-unet-export --web DIR)")
  parser.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1)")
  parser.add_argument("--port", type=int, default=8000, help="the port (default 8000)")
  parser.add_argument("--no-isolation", action="store_true", help="leave out the COOP/COEP headers (one thread)")
  args = parser.parse_args(argv)
  if not os.path.isfile(os.path.join(args.directory, "manifest.json")):
    parser.exit(1, f"{parser.prog}: error: {args.directory}: not a site of wave-unet-export --web\n")
  try:
    server = make_server(args.directory, args.host, args.port, not args.no_isolation)
  except OSError as e:
    parser.exit(1, f"{parser.prog}: error: --port={args.port}: cannot listen there ({e.strerror or e})\n")
  print(f"serving {args.directory} on http://{args.host}:{server.server_address[1]}/ (Ctrl+C stops it)", flush=True)
  try:
    server.serve_forever()
  except KeyboardInterrupt:
    pass
  return 0


if __name__ == "__main__":
  sys.exit(main())
