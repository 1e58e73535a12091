"""Scoring one track with museval (BSS Eval v4, 1 s windows) and storing it in museval's JSON layout.

Kept free of TensorFlow so that `--jobs` worker processes start quickly.
"""

import json
import os

import museval

from wave_unet_tf.files import write_text_atomically

WINDOW_SECONDS = 1.0
MIXTURE_BASELINE = "mixture_baseline"  # subfolder of the output dir for the mixture-as-estimate scores


def scores_path(output_dir: str, subset: str, track_name: str) -> str:
  """museval's layout: ``<output_dir>/<subset>/<track name>.json``."""
  return os.path.join(output_dir, subset, track_name + ".json")


def is_scored(path: str) -> bool:
  """Scores are written by rename, so an existing file is complete; one damaged since (it does not parse)
  is scored again."""
  try:
    with open(path) as f:
      json.load(f)
    return True
  except (OSError, ValueError):
    return False


def score_track(track, estimates, path: str):
  """Scores ``estimates`` ``{source: [samples, channels]}`` of a musdb ``track`` and writes the JSON to
  ``path`` atomically (a killed run leaves no half file that resuming would skip). Returns the
  `museval.TrackStore`."""
  store = museval.eval_mus_track(track, estimates, output_dir=None, mode="v4", win=WINDOW_SECONDS,
                                 hop=WINDOW_SECONDS)
  store.validate()
  os.makedirs(os.path.dirname(path), exist_ok=True)
  write_text_atomically(path, store.json)
  return store


def mixture_estimates(track, source_names):
  """The baseline: the mixture itself as every source's estimate."""
  return {source: track.audio for source in source_names}


_DB_CACHE = {}


def score_in_worker(db_args, track_name, estimates, path, source_names):
  """`score_track` in a worker process: finds the track in its own musdb handle (tracks are not shared
  between processes). ``estimates=None`` scores the mixture baseline."""
  import musdb
  key = tuple(sorted(db_args.items()))
  if key not in _DB_CACHE:
    _DB_CACHE[key] = {t.name: t for t in musdb.DB(**db_args).tracks}
  track = _DB_CACHE[key][track_name]
  if estimates is None:
    estimates = mixture_estimates(track, source_names)
  score_track(track, estimates, path)
  return path
