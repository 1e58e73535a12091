r"""wave-unet-separate-beam: separate a catalogue of songs as an Apache Beam pipeline.

  wave-unet-separate-beam --input='music/**/*.flac' --output_dir=separated --model=M5-HighSR.keras \
      --direct_num_workers=2
  wave-unet-separate-beam --input='gs://bucket/music/**' --output_dir=gs://bucket/separated --model=... \
      --runner=DataflowRunner --project=... --region=... --temp_location=gs://bucket/tmp

writes each song's stems as `wave-unet-separate` does (``separated/live/a/vocals.wav`` for
``music/live/a.flac``; the same output flags), then a completion marker under ``separated/.separated/``: a
re-run skips finished songs and finishes the others. Songs that fail are listed in
``separated/failures.jsonl`` (path and error) and the job goes on; the command ends with the same summary line
as `wave-unet-separate` and exits 1 when a song failed. Flags this command does not define go to Beam
(``--runner``, ``--project``, ``--num_workers``, ...); without ``--runner`` it runs locally on Beam's
FnApiRunner, ``--direct_num_workers`` processes (default 1), which needs no network.
"""

import contextlib
import json
import os
import re
import sys
import tempfile
import time

from absl import flags

from wave_unet_tf import cli, separation_flags
from wave_unet_tf.separation import outputs

flags.DEFINE_string("input", None, "The songs: a glob on any Beam filesystem (local, gs://, s3://, azfs:// with "
                    "Beam's extras); ** crosses folders, a folder means every file below it. Audio files only; "
                    "hidden files and --output_dir are left out.")
separation_flags.define_flags()
for module in (separation_flags, outputs):
  flags.adopt_module_key_flags(module)  # so --help lists them with the command's own
flags.DEFINE_integer("threads", 0, "TensorFlow threads per worker process (0: the worker's cores divided by the "
                     "worker processes on its machine).", lower_bound=0)
flags.mark_flag_as_required("input")
FLAGS = flags.FLAGS
SHOWN_FAILURES = 100  # failed songs said on the terminal; the report lists them all


def main(argv):
  options = outputs.from_flags(FLAGS)
  separation_flags.check_flags(FLAGS)
  from wave_unet_tf.runtime import debugging, quiet_terminal
  if not debugging():
    quiet_terminal()  # before Beam is imported: its import logs warnings
  import logging
  if not debugging():  # errors are this command's lines; Beam would log each with its traceback too
    logging.getLogger().setLevel(logging.CRITICAL)
  from wave_unet_tf.batch import pipeline, songs
  try:
    beam_options = pipeline.pipeline_options(argv[1:])
  except ValueError as e:
    raise cli.UsageError(str(e)) from None
  pattern, output_dir = songs.absolute(FLAGS.input), songs.absolute(FLAGS.output_dir)
  if pattern.endswith("/") or (songs.is_local(pattern) and os.path.isdir(pattern)):
    pattern = pattern.rstrip("/") + "/**"  # a folder: the audio files below it
  _check_input(pattern)
  _check_writable(output_dir)
  cli.fetch_named_model(FLAGS.model)  # a catalogue name: fetched here once, or its failure said in a second
  job = songs.Job(model=FLAGS.model, output_dir=output_dir, options=options, offset=FLAGS.offset,
                  duration=FLAGS.duration, device=FLAGS.device, window_seconds=FLAGS.window_seconds,
                  batch_size=FLAGS.batch_size, jit_compile=FLAGS.jit_compile,
                  compile_cache=FLAGS.compile_cache or None, threads=FLAGS.threads,
                  processes_per_machine=pipeline.processes_per_machine(beam_options),
                  model_repo=os.environ.get(cli.MODEL_REPO_ENV), precision=FLAGS.precision)

  import apache_beam as beam
  start = time.perf_counter()
  beam_pipeline = beam.Pipeline(options=beam_options)
  pipeline.build(beam_pipeline, pattern, job)
  try:
    with _worker_output_aside(debugging()):
      result = beam_pipeline.run()
      result.wait_until_finish()
  except Exception as e:  # a worker that could not start (the model), a runner that failed
    if debugging():
      raise
    raise RuntimeError(f"the pipeline failed: {_worker_error(e)}") from None
  elapsed = time.perf_counter() - start
  counts = pipeline.counters(result)
  failures = _read_report(songs.join(output_dir, songs.REPORT))
  for failure in failures[:SHOWN_FAILURES]:
    print(f"{os.path.basename(sys.argv[0])}: error: {failure['error']}", file=sys.stderr, flush=True)
  if len(failures) > SHOWN_FAILURES:
    print(f"{os.path.basename(sys.argv[0])}: ... and {len(failures) - SHOWN_FAILURES} more", file=sys.stderr)
  seconds = counts["audio_milliseconds"] / 1000
  print(f"{FLAGS.input} -> {FLAGS.output_dir} ({seconds:.1f} s of audio in {elapsed:.1f} s, "
        f"{seconds / max(elapsed, 1e-9):.1f}x real time)", flush=True)
  summary = {what: counts[f"songs_{what}"] for what in ("separated", "skipped", "failed")}
  print(", ".join(f"{n} {what}" for what, n in summary.items()), flush=True)
  if summary["failed"]:
    raise RuntimeError(f"{summary['failed']} of {sum(summary.values())} input(s) failed; "
                       f"see {songs.join(FLAGS.output_dir, songs.REPORT)}")


@contextlib.contextmanager
def _worker_output_aside(debugging):
  """Local worker processes inherit file descriptor 2 and log their start, end and every error's traceback
  there: while the pipeline runs it is a temporary file (this command reports the errors in its own lines).
  The command's own lines go to the real stderr (`runtime.quiet_terminal` keeps it apart)."""
  if debugging:
    yield
    return
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as log:
    os.dup2(log.fileno(), 2)
    try:
      yield
    finally:
      os.dup2(saved, 2)
      os.close(saved)


def _check_input(pattern):
  from apache_beam.io.filesystems import FileSystems
  try:
    found = FileSystems.match([pattern], limits=[1])[0].metadata_list
  except Exception as e:  # an unknown scheme, no credentials, a bucket that is not there
    raise cli.UsageError(f"--input={FLAGS.input}: {_one_line(e)}") from None
  if not found:
    raise cli.UsageError(f"--input={FLAGS.input}: matches no files")


def _check_writable(output_dir):
  """Writes and removes a file in ``output_dir`` through Beam, as the workers will write there (a read-only
  mount stops root too; permissions do not)."""
  import uuid

  from apache_beam.io.filesystems import FileSystems

  from wave_unet_tf.batch import songs
  probe = songs.join(output_dir, f"{songs.TEMPORARY}probe-{uuid.uuid4().hex[:12]}")
  try:
    with FileSystems.create(probe) as f:
      f.write(b"")
    FileSystems.delete([probe])
  except Exception as e:
    raise OSError(f"--output_dir {FLAGS.output_dir}: not writable ({songs.reason(e)})") from None


def _read_report(path):
  from apache_beam.io.filesystems import FileSystems
  try:
    with FileSystems.open(path) as f:
      return [json.loads(line) for line in f.read().decode().splitlines() if line.strip()]
  except (OSError, ValueError):
    return []


def _worker_error(error):
  """The last ``Type: message`` line of a (possibly remote) traceback in ``error``, else its first line."""
  text = str(error)
  found = re.findall(r"^(?:[\w.]+\.)?(\w*(?:Error|Exception)): (.+)$", text, re.MULTILINE)
  if found:
    return _one_line(re.sub(r" \[while running '[^']*'\]$", "", found[-1][1]))
  return _one_line(text.strip().splitlines()[0] if text.strip() else type(error).__name__)


def _one_line(error):
  return " ".join(str(error).split())


HELP_GROUPS = (
    ("Songs", ("input",)),
    ("Model", ("model", "model_repo", "device", "precision")),
    ("Input", ("offset", "duration")),
    ("Output", ("output_dir", "filename", "stems", "two_stems", "codec", "bit_depth", "bitrate", "clip",
                "skip_existing")),
    ("Speed and memory (never the result)", ("window_seconds", "frame_seconds", "batch_size", "jit_compile",
                                             "compile_cache", "threads")),
)


def run():
  cli.run(main, HELP_GROUPS, known_only=True)


if __name__ == "__main__":
  run()
