"""The benchmarks' figures on disk, for the documentation's charts.

A benchmark prints its figures and, with ``save(name, rows)``, also keeps them as
``benchmarks/results/<name>.json`` together with the host (or GPU) it ran on; ``benchmarks/charts.py`` draws
the charts of the docs from those files, so a chart is always the output of a run, never typed in.
"""

import datetime
import json
import os
import platform

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def host() -> str:
  """This machine in words: the CPU model and its cores (the figures are only comparable on one host)."""
  model = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          model = line.split(":", 1)[1].strip()
          break
  except OSError:
    pass
  return f"{model}, {os.cpu_count()} cores"


def save(name: str, rows: list, device: str = None, **about) -> str:
  """Writes ``rows`` (a list of dicts, one per setting) as ``results/<name>.json``; returns its path.

  ``device``: what ran the work when it was not this host's CPU (e.g. ``NVIDIA H200``); ``about``: settings.
  """
  os.makedirs(RESULTS, exist_ok=True)
  path = os.path.join(RESULTS, f"{name}.json")
  record = {"benchmark": name, "host": host(), "device": device or "CPU",
            "date": datetime.date.today().isoformat(), **about, "rows": rows}
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(record, f, indent=1)
    f.write("\n")
  os.replace(tmp, path)
  return path


def load(name: str) -> dict:
  with open(os.path.join(RESULTS, f"{name}.json")) as f:
    return json.load(f)
