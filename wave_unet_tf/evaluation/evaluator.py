"""Separate a MUSDB subset and score it: the paper's evaluation, resumable and parallel."""

import concurrent.futures
import multiprocessing
import os
import sys
from typing import Optional, Sequence

from wave_unet_tf.evaluation import scoring, summary, tracks as musdb_tracks
from wave_unet_tf.files import is_disk_full

MODEL = "model"
# A track's failures that skip it (unreadable or damaged files) rather than stop the evaluation; soundfile's
# and museval's errors are RuntimeError and ValueError. A full disk stops it: every later track would fail too.
SCORING_ERRORS = (ValueError, OSError, RuntimeError)


def evaluate(model_or_separator, musdb_root: str, subset: str = "test", output_dir: str = "evaluation",
             split: Optional[str] = None, is_wav: Optional[bool] = None, jobs: int = 1, baseline: bool = False,
             track_names: Optional[Sequence[str]] = None, window_seconds: Optional[float] = None,
             batch_size: Optional[int] = None, progress: bool = True, log=print, split_mode: str = "official",
             precision: Optional[str] = None) -> dict:
  """Separates every track of a MUSDB subset and scores it with museval (BSS Eval v4, 1 s windows).

  Per-track scores go to ``<output_dir>/<subset>/<track>.json`` (museval's layout) and, with ``baseline``,
  the mixture-as-estimate scores to ``<output_dir>/mixture_baseline/<subset>/<track>.json``. Tracks whose
  JSON already exists are skipped, so an interrupted run resumes. A track that cannot be read or scored is
  reported on one line and skipped; the summary covers the others. Then ``summary.csv`` and
  ``summary.json`` are written.

  Args:
    model_or_separator: a `Separator`, or anything `Separator` accepts (model, path, forward pass).
    musdb_root: MUSDB18 (``.stem.mp4``) or MUSDB18-HQ layout (``is_wav``; None detects it).
    subset: ``test`` or ``train``; split: None, ``train`` or ``valid``, the split of ``train`` that training
      makes (``split_mode``: musdb's official one, else the original's random one).
    jobs: processes scoring in parallel (museval is the slow part); separation runs in this process.
    baseline: also score the mixture as every source's estimate.
    track_names: only these tracks.
    window_seconds, batch_size, precision: for a `Separator` built here (precision: float32, float16 or int8,
      `wave_unet_tf.precision`; default float32).

  Returns:
    ``{"methods": {"model": S, "mixture_baseline": S}, "tracks": [...], ...}`` where ``S`` is
    ``{source: {metric: {"median_pooled_frames": dB, "median_of_track_medians": dB, ...}}}``.

  Raises:
    RuntimeError: after the summary, naming the tracks that were skipped (or none could be scored).
  """
  if jobs < 1:
    raise ValueError(f"jobs={jobs}: must be at least 1")
  track_list, is_wav = musdb_tracks.open_tracks(musdb_root, subset, split, is_wav, track_names, split_mode)
  separator = _as_separator(model_or_separator, window_seconds, batch_size, precision)
  sources = separator.source_names
  musdb_tracks.check_sources(track_list[0], sources)
  os.makedirs(output_dir, exist_ok=True)

  methods = {MODEL: output_dir}
  if baseline:
    methods[scoring.MIXTURE_BASELINE] = os.path.join(output_dir, scoring.MIXTURE_BASELINE)
  paths = {(m, t.name): scoring.scores_path(folder, t.subset, t.name) for m, folder in methods.items()
           for t in track_list}
  todo = [t for t in track_list if any(not scoring.is_scored(paths[m, t.name]) for m in methods)]
  if len(todo) < len(track_list):
    log(f"skipping {len(track_list) - len(todo)} already scored track(s) in {output_dir}")

  db_args = dict(root=musdb_root, is_wav=is_wav, subsets=subset)
  failed = {}  # track name -> why: a damaged track is reported and skipped, the others are scored
  with _Scorer(jobs, db_args, sources, failed) as scorer:
    for track in _progress(todo, progress):
      try:
        musdb_tracks.check_files(track)
        if not scoring.is_scored(paths[MODEL, track.name]):
          estimates = _separate_track(separator, track)
          scorer.submit(track, estimates, paths[MODEL, track.name])
        if baseline and not scoring.is_scored(paths[scoring.MIXTURE_BASELINE, track.name]):
          scorer.submit(track, None, paths[scoring.MIXTURE_BASELINE, track.name])
      except SCORING_ERRORS as e:
        scorer.fail(track.name, e)

  scored = [t for t in track_list if t.name not in failed and all(scoring.is_scored(paths[m, t.name])
                                                                   for m in methods)]
  if not scored:
    raise RuntimeError(f"{musdb_root}: none of the {len(track_list)} track(s) could be scored")
  by_method = {m: summary.summarize_scores(summary.read_scores(paths[m, t.name] for t in scored))
               for m in methods}
  extra = {"musdb_root": os.fspath(musdb_root), "subset": subset, "split": split, "is_wav": is_wav,
           "tracks": [t.name for t in scored]}
  if failed:
    extra["failed_tracks"] = failed
  csv_path, json_path = summary.save_summary(by_method, output_dir, extra)
  log(summary.format_table(by_method))
  log(f"wrote {csv_path} and {json_path}")
  if failed:
    raise RuntimeError(f"{len(failed)} of {len(track_list)} track(s) could not be scored (see above; the summary "
                       f"leaves them out): {', '.join(sorted(failed))}")
  return {**extra, "metrics": list(summary.METRICS), "methods": by_method}


def _separate_track(separator, track):
  """The track's estimates, separated from its mixture file as `wave-unet-separate` does (streamed, so only
  the estimates museval scores are held in memory) and read back."""
  import tempfile

  import soundfile
  # musdb's path is the mixture.wav, or the .stem.mp4 whose first audio stream (what ffmpeg decodes) is it.
  with tempfile.TemporaryDirectory(prefix="wave_unet_eval_") as scratch:
    paths, _ = separator.separate_file(track.path, scratch)
    return {source: soundfile.read(path, dtype="float32", always_2d=True)[0] for source, path in paths.items()}


def _as_separator(model_or_separator, window_seconds, batch_size, precision=None):
  from wave_unet_tf import precision as precisions
  from wave_unet_tf.separation import Separator
  if isinstance(model_or_separator, Separator):
    if precision is not None and precisions.check(precision) != model_or_separator.precision:
      raise ValueError(f"--precision={precision}: the Separator given runs at {model_or_separator.precision}")
    return model_or_separator
  options = {k: v for k, v in dict(window_seconds=window_seconds, batch_size=batch_size).items() if v}
  if precision is not None:
    options["precision"] = precision
  return Separator(model_or_separator, **options)


def _progress(items, enabled):
  from tqdm import tqdm
  return tqdm(items, desc="tracks", unit="track", disable=not enabled or not items, file=sys.stderr)


class _Scorer:
  """Scores in this process (``jobs=1``) or in ``jobs`` spawned processes, with at most ``jobs`` tracks
  waiting so that estimates of a whole subset never pile up in memory. A track whose scoring fails is
  reported and put in ``failed`` (``{track name: reason}``)."""

  def __init__(self, jobs, db_args, sources, failed):
    self.jobs, self.db_args, self.sources = jobs, db_args, list(sources)
    self.failed = failed
    self.pool = None
    self.pending = {}

  def __enter__(self):
    if self.jobs > 1:
      # spawn, not fork: this process runs TensorFlow's thread pools, which do not survive a fork.
      self.pool = concurrent.futures.ProcessPoolExecutor(self.jobs, mp_context=multiprocessing.get_context("spawn"))
    return self

  def fail(self, track_name, error):
    if is_disk_full(error):
      raise error
    reason = " ".join(str(error).split()) or type(error).__name__
    self.failed[track_name] = reason
    from tqdm import tqdm
    # Through tqdm, so the line is not glued to the progress bar.
    tqdm.write(f"{os.path.basename(sys.argv[0] or 'wave_unet_tf')}: skipping track {track_name!r}: {reason}",
               file=sys.stderr)

  def submit(self, track, estimates, path):
    if self.pool is None:
      scoring.score_track(track, estimates if estimates is not None else
                          scoring.mixture_estimates(track, self.sources), path)
      return
    future = self.pool.submit(scoring.score_in_worker, self.db_args, track.name, estimates, path, self.sources)
    self.pending[future] = track.name
    while len(self.pending) > self.jobs:
      self._collect(concurrent.futures.FIRST_COMPLETED)

  def _collect(self, return_when):
    done, _ = concurrent.futures.wait(list(self.pending), return_when=return_when)
    for future in done:
      track_name = self.pending.pop(future)
      try:
        future.result()  # re-raises a worker's error here
      except SCORING_ERRORS as e:
        self.fail(track_name, e)

  def __exit__(self, *exc):
    if self.pool is not None:
      try:
        if exc[0] is None:
          self._collect(concurrent.futures.ALL_COMPLETED)
      finally:
        self.pool.shutdown(wait=True, cancel_futures=True)
    return False
