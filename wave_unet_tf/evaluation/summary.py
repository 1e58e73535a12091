"""Summaries of museval scores: per source and metric, the paper's and SiSec's medians."""

import csv
import io
import json
import math
import os
from typing import Dict, Iterable, List

import numpy as np

from wave_unet_tf.files import write_text_atomically

METRICS = ("SDR", "SIR", "SAR", "ISR")
POOLED = "median_pooled_frames"       # the paper: median over all 1 s frames of all tracks
TRACK_MEDIANS = "median_of_track_medians"  # SiSec 2018: median over tracks of each track's median


def read_scores(paths: Iterable[str]) -> Dict[str, Dict[str, List[np.ndarray]]]:
  """``{source: {metric: [per-track frame values]}}`` from museval JSON files; NaN frames (silent
  references) stay NaN and are ignored by the medians, as in museval."""
  scores = {}
  for path in paths:
    with open(path) as f:
      data = json.load(f)
    for target in data["targets"]:
      per_metric = scores.setdefault(target["name"], {m: [] for m in METRICS})
      for metric in METRICS:
        values = [_number(frame["metrics"][metric]) for frame in target["frames"]]
        per_metric[metric].append(np.asarray(values, np.float64))
  return scores


def _number(value):
  return math.nan if value is None else float(value)


def summarize_scores(scores) -> Dict[str, Dict[str, Dict[str, float]]]:
  """``{source: {metric: {POOLED: x, TRACK_MEDIANS: y, "tracks": n, "frames": m}}}``."""
  summary = {}
  for source, per_metric in scores.items():
    summary[source] = {}
    for metric in METRICS:
      tracks = per_metric[metric]
      pooled = np.concatenate(tracks) if tracks else np.array([])
      track_medians = np.array([_nanmedian(t) for t in tracks])
      summary[source][metric] = {POOLED: _nanmedian(pooled), TRACK_MEDIANS: _nanmedian(track_medians),
                                 "tracks": len(tracks), "frames": int(np.sum(np.isfinite(pooled)))}
  return summary


def _nanmedian(values):
  values = np.asarray(values, np.float64)
  finite = values[np.isfinite(values)]
  return float(np.median(finite)) if finite.size else math.nan


def rows(summary_by_method):
  """Flat rows ``(method, source, metric, pooled, track_medians, tracks, frames)``."""
  for method, summary in summary_by_method.items():
    for source, per_metric in summary.items():
      for metric in METRICS:
        s = per_metric[metric]
        yield method, source, metric, s[POOLED], s[TRACK_MEDIANS], s["tracks"], s["frames"]


def format_table(summary_by_method) -> str:
  """A plain-text table: one line per method, source and metric, medians in dB."""
  header = f"{'method':<18}{'source':<15}{'metric':<8}{'median (pooled frames)':>24}{'median (track medians)':>24}"
  lines = [header, "-" * len(header)]
  for method, source, metric, pooled, track_median, _, _ in rows(summary_by_method):
    lines.append(f"{method:<18}{source:<15}{metric:<8}{pooled:>24.3f}{track_median:>24.3f}")
  return "\n".join(lines)


def save_summary(summary_by_method, output_dir, extra=None):
  """Writes ``summary.csv`` and ``summary.json`` in ``output_dir`` (atomically); returns their paths."""
  csv_path = os.path.join(output_dir, "summary.csv")
  json_path = os.path.join(output_dir, "summary.json")
  table = io.StringIO(newline="")
  writer = csv.writer(table)
  writer.writerow(["method", "source", "metric", POOLED, TRACK_MEDIANS, "tracks", "frames"])
  writer.writerows(rows(summary_by_method))
  write_text_atomically(csv_path, table.getvalue(), newline="")
  write_text_atomically(json_path, json.dumps({**(extra or {}), "metrics": list(METRICS), "unit": "dB",
                                               "methods": summary_by_method}, indent=2, allow_nan=True))
  return csv_path, json_path
