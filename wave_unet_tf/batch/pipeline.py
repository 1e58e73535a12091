"""The separation as a Beam pipeline: a glob of songs in, stems, completion markers and a failure report out.

    MatchFiles(glob) -> songs (audio, not hidden, not our outputs), keyed by their output names
    -> GroupByKey (the reshuffle: songs spread over workers; two songs writing the same files meet here)
    -> SeparateSongs: the model once per worker process, each song through `songs.Worker`
    -> failed songs: one JSON line each in ``<output_dir>/failures.jsonl``

Metrics (namespace ``wave_unet_tf``): ``songs_separated``, ``songs_skipped``, ``songs_failed``,
``audio_milliseconds``.
"""

import json
from typing import Optional

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import (DebugOptions, DirectOptions, PipelineOptions, PortableOptions,
                                                  StandardOptions)
from apache_beam.utils import shared

from wave_unet_tf import audio
from wave_unet_tf.batch import songs

NAMESPACE = "wave_unet_tf"
COUNTERS = ("songs_separated", "songs_skipped", "songs_failed", "audio_milliseconds")
FAILED = "failed"
LOCAL_RUNNER = "FnApiRunner"  # Beam's DirectRunner first tries to download the Prism runner; this needs no network
_LOCAL_RUNNERS = ("FnApiRunner", "DirectRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner")
# What a song may fail with (as wave-unet-separate reports it); anything else is a bug, left to Beam's retries.
SONG_ERRORS = (audio.AudioError, ValueError, OSError, RuntimeError)


class SeparateSongs(beam.DoFn):
  """``(output key, [(path, track), ...])`` -> the seconds of each song separated; a failed song goes to the
  ``failed`` output as ``{"path", "error"}``. The model is loaded in `setup`, once per worker process
  (`shared.Shared`), never pickled with the DoFn."""

  def __init__(self, job: songs.Job):
    self.job = job
    self._shared = shared.Shared()
    self._worker = None
    self._counters = {name: Metrics.counter(NAMESPACE, name) for name in COUNTERS}

  def setup(self):
    job = self.job
    self._worker = self._shared.acquire(lambda: songs.Worker(job), tag=repr(job))

  def process(self, element):
    _, candidates = element
    written_by = None  # the song that owns these outputs in this run
    for path, track in sorted(candidates):
      if written_by is not None:
        yield self._failed(path, ValueError(self._overwrite_message(path, track, written_by)))
        continue
      try:
        seconds = self._worker.separate(path, track)
      except SONG_ERRORS as e:
        yield self._failed(path, e)
        continue
      written_by = path
      if seconds is None:
        self._counters["songs_skipped"].inc()
      else:
        self._counters["songs_separated"].inc()
        self._counters["audio_milliseconds"].inc(round(seconds * 1000))
        yield seconds

  def _failed(self, path, error):
    self._counters["songs_failed"].inc()
    return beam.pvalue.TaggedOutput(FAILED, dict(path=path, error=" ".join(str(error).split())))

  def _overwrite_message(self, path, track, written_by):
    output = next(iter(self._worker.outputs(track).values()))
    fix = "use {track} in --filename" if "{track}" not in self.job.options.filename else \
        "separate it in another run with another --output_dir"
    return f"{path}: would overwrite {output}, written from {written_by} in this run; {fix}"


def build(pipeline: beam.Pipeline, pattern: str, job: songs.Job):
  """Adds the separation of the songs ``pattern`` matches to ``pipeline``."""
  results = (pipeline
             | "Match" >> fileio.MatchFiles(pattern, empty_match_treatment="ALLOW")
             | "Songs" >> beam.FlatMap(_keyed_song, songs.glob_base(pattern), job)
             | "GroupByOutputs" >> beam.GroupByKey()
             | "Separate" >> beam.ParDo(SeparateSongs(job)).with_outputs(FAILED, main="separated"))
  (results[FAILED]
   | "ReportLines" >> beam.Map(json.dumps)
   | "Report" >> beam.io.WriteToText(songs.join(job.output_dir, songs.REPORT[:-len(".jsonl")]),
                                     file_name_suffix=".jsonl", shard_name_template="", num_shards=1))
  return results


def _keyed_song(metadata, base, job):
  path = metadata.path
  if songs.is_song(path, base, job.output_dir):
    track = songs.track_of(path, base)
    yield songs.output_key(track, job.options), (path, track)


def pipeline_options(args, default_workers: int = 1) -> PipelineOptions:
  """Beam's options from the arguments absl left; an argument Beam does not know either is a `ValueError`.
  Without ``--runner``: `LOCAL_RUNNER`; several local workers run as processes (one model each)."""
  _refuse_unknown(args)
  args = list(args)
  given = {a.split("=", 1)[0].lstrip("-") for a in args if a.startswith("--")}
  if "runner" not in given:
    args.append(f"--runner={LOCAL_RUNNER}")
    if "direct_num_workers" not in given:
      args.append(f"--direct_num_workers={default_workers}")
  options = PipelineOptions(args)
  direct = options.view_as(DirectOptions)
  if "direct_running_mode" not in given and (direct.direct_num_workers or 1) > 1:
    options = PipelineOptions(args + ["--direct_running_mode=multi_processing"])
  return options


def _refuse_unknown(args):
  options = PipelineOptions(args)
  known = options.get_all_options(retain_unknown_options=False)
  unknown = sorted(set(options.get_all_options(retain_unknown_options=True)) - set(known))
  if unknown:
    raise ValueError(f"unknown flag --{unknown[0]} (neither this command's nor Beam's; see --helpfull and "
                     f"Beam's pipeline options)")
  for i, arg in enumerate(args):
    follows_flag = i > 0 and args[i - 1].startswith("--") and "=" not in args[i - 1]
    if not arg.startswith("-") and not follows_flag:
      raise ValueError(f"unexpected argument {arg!r}: the songs are named by --input=PATTERN")


def processes_per_machine(options: PipelineOptions) -> Optional[int]:
  """How many SDK worker processes share a machine on this runner (None: one per core), to fit each one's
  TensorFlow threads: local runners in processes run ``--direct_num_workers``; Dataflow runs one per core
  unless ``--experiments=no_use_multiple_sdk_containers``; portable runners (Flink, Spark) run
  ``--sdk_worker_parallelism``."""
  runner = options.view_as(StandardOptions).runner or LOCAL_RUNNER
  runner = runner if isinstance(runner, str) else type(runner).__name__
  if runner in _LOCAL_RUNNERS:
    direct = options.view_as(DirectOptions)
    if direct.direct_running_mode == "multi_processing":
      return direct.direct_num_workers or None  # 0: one per core
    return 1
  if runner in ("DataflowRunner", "TestDataflowRunner"):
    experiments = options.view_as(DebugOptions).experiments or []
    return 1 if "no_use_multiple_sdk_containers" in experiments else None
  return int(options.view_as(PortableOptions).sdk_worker_parallelism or 0) or None


def counters(result) -> dict:
  """The run's metrics in namespace `NAMESPACE`, summed over steps: committed where the runner has them."""
  totals = {name: 0 for name in COUNTERS}
  for counter in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]:
    value = counter.committed if counter.committed is not None else counter.attempted
    totals[counter.key.metric.name] = totals.get(counter.key.metric.name, 0) + (value or 0)
  return totals
