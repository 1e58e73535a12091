r"""wave-unet-separate: separate audio files into one file per source.

  wave-unet-separate song.mp3                # with M5-HighSR, the paper's best vocal model (fetched once)
  wave-unet-separate --model M6 --output_dir separated song.mp3 music/      # bass, drums, other, vocals

writes ``separated/song/accompaniment.wav``, ``separated/song/vocals.wav``, ... at each input's sample
rate, length and channel count; a folder is searched for audio, and its files keep their place below it
(``music/live/a.flac`` -> ``separated/live/a/...``). A file that fails is reported and the others are still
separated; a summary line ends the run, and the exit status is 1 if any failed.
"""

import dataclasses
import os
import sys
import time

from absl import flags

from wave_unet_tf import cli, separation_flags
from wave_unet_tf.audio import AUDIO_EXTENSIONS
from wave_unet_tf.separation import outputs

separation_flags.define_flags()
for module in (separation_flags, outputs):
  flags.adopt_module_key_flags(module)  # so --help lists them with the command's own
flags.DEFINE_bool("progress", True, "Show a progress bar per file.")
# Real-time streaming: `--block_frames N - --stdout=SOURCE` separates stdin as it comes.
flags.DEFINE_integer("block_frames", None, "Real-time streaming: samples per block at the model's rate (a "
                     "multiple of 2**num_layers); unset: offline framing. Needs the input '-' and --stdout.")
flags.DEFINE_string("stdout", None, "Write this stem (a source, or no_<source>) to stdout as a WAV stream.")
FLAGS = flags.FLAGS
HELP_GROUPS = (
    ("Model", ("model", "model_repo", "device", "precision")),
    ("Input", ("offset", "duration")),
    ("Output", ("output_dir", "filename", "stems", "two_stems", "codec", "bit_depth", "bitrate", "clip",
                "skip_existing", "stdout")),
    ("Speed and memory (never the result)", ("window_seconds", "frame_seconds", "batch_size", "jit_compile",
                                             "compile_cache")),
    ("Real-time streaming", ("block_frames",)),
)


def _writable_folder(folder):
  try:
    os.makedirs(folder, exist_ok=True)
  except OSError as e:
    raise OSError(f"--output_dir {folder}: cannot create it ({e.strerror or e})") from None
  if not os.access(folder, os.W_OK | os.X_OK):
    raise OSError(f"--output_dir {folder}: not writable")


def find_inputs(arguments, output_dir):
  """``[(path, track or None)]`` for the command's arguments: files and ``-`` as given, folders searched
  recursively for audio (sorted; not inside ``output_dir``), each named by its path below the folder."""
  skip = os.path.abspath(output_dir) + os.sep
  inputs = []
  for argument in arguments:
    if argument == "-" or not os.path.isdir(argument):
      inputs.append((argument, None))  # a missing file is reported when its turn comes
      continue
    found = []
    for folder, subfolders, files in os.walk(argument):
      subfolders[:] = sorted(d for d in subfolders if not (os.path.abspath(os.path.join(folder, d)) + os.sep)
                             .startswith(skip) and not d.startswith("."))
      for name in files:
        if name.lower().endswith(AUDIO_EXTENSIONS) and not name.startswith("."):
          path = os.path.join(folder, name)
          found.append((path, _without_extensions(os.path.relpath(path, argument))))
    if not found:
      raise cli.UsageError(f"{argument}: a folder with no audio files ({', '.join(AUDIO_EXTENSIONS)})")
    inputs.extend(sorted(found))
  return inputs


def _without_extensions(relative_path):
  from wave_unet_tf.separation.separator import track_name
  return os.path.join(os.path.dirname(relative_path), track_name(relative_path))


def separate_file(separator, path, output_dir, options, progress=True, stdout=None, track=None, offset=0.0,
                  duration=None):
  """Separates one file (or ``-``) with a progress bar on stderr; returns ``(written paths, seconds)``
  (seconds None: skipped). Raises `AudioError`/`OSError`/`ValueError` naming the file."""
  from tqdm import tqdm

  import soundfile
  total = duration
  if path != "-":  # soundfile would read '-' as stdin
    try:  # the length where the header says it cheaply; ffmpeg's formats go without
      header = soundfile.info(path)
      total = min(total or 1e12, max(0.0, header.frames / header.samplerate - offset))
    except Exception:  # the separation itself says what is wrong with the file
      pass
  bar = tqdm(desc=os.path.basename(path), total=None if total is None else round(total, 1), unit="s",
             disable=not progress, leave=False, file=sys.stderr,
             bar_format="{l_bar}{bar}| {n:.0f}/{total_fmt} s [{elapsed}<{remaining}]")
  def update(seconds):
    bar.n = round(seconds, 1)
    bar.refresh()
  try:
    paths, seconds = separator.separate_file(path, output_dir, options=options, offset=offset, duration=duration,
                                             track=track, stdout=stdout, progress=update)
  finally:
    bar.close()
  return list(paths.values()), seconds


def main(argv):
  options = outputs.from_flags(FLAGS)
  if FLAGS.block_frames is not None:
    return _main_live(argv[1:])
  if not argv[1:]:
    raise cli.UsageError("give one or more audio files or folders to separate")
  separation_flags.check_flags(FLAGS)
  inputs = find_inputs(argv[1:], FLAGS.output_dir)
  if FLAGS.stdout:
    if len(inputs) != 1:
      raise cli.UsageError(f"--stdout={FLAGS.stdout}: give exactly one input (a file or '-')")
    if options.stems or options.two_stems:
      raise cli.UsageError(f"--stdout={FLAGS.stdout}: writes that stem alone; leave out --stems and --two_stems")
    options = dataclasses.replace(options, stems=(FLAGS.stdout,))
  _writable_folder(FLAGS.output_dir)
  cli.fetch_named_model(FLAGS.model)
  cli.start_tensorflow(FLAGS.compile_cache if FLAGS.jit_compile else None)
  from wave_unet_tf.audio import AudioError
  from wave_unet_tf.runtime import use_device
  from wave_unet_tf.separation import Separator
  use_device(FLAGS.device)
  separator = Separator(FLAGS.model, window_seconds=FLAGS.window_seconds, batch_size=FLAGS.batch_size,
                        jit_compile=FLAGS.jit_compile, precision=FLAGS.precision)
  if FLAGS.stdout and outputs.sources_of_stem(FLAGS.stdout, separator.source_names) is None:
    raise cli.UsageError(f"--stdout={FLAGS.stdout}: not a source of this model ({', '.join(separator.source_names)}; "
                         f"or no_<source>, the sum of the others)")
  stems = options.stem_sources(separator.source_names)  # a stem the model lacks: said before any work

  report = sys.stderr if FLAGS.stdout else sys.stdout  # with --stdout the audio goes to stdout
  counts = {"separated": 0, "skipped": 0, "failed": 0}
  written_by = {}  # output path -> the input that wrote it in this run
  for path, track in inputs:
    start = time.perf_counter()
    try:
      if not FLAGS.stdout:
        _check_not_written(path, track, options, stems, written_by)
      written, seconds = separate_file(separator, path, FLAGS.output_dir, options, FLAGS.progress,
                                       stdout=sys.stdout.buffer if FLAGS.stdout else None, track=track,
                                       offset=FLAGS.offset, duration=FLAGS.duration)
    except (AudioError, ValueError, OSError, RuntimeError) as e:
      if len(inputs) == 1:
        raise  # its one line is the command's error
      message = " ".join(str(e).split())
      print(f"{os.path.basename(sys.argv[0])}: error: {message}", file=sys.stderr, flush=True)
      counts["failed"] += 1
      continue
    if seconds is None:
      counts["skipped"] += 1
      print(f"{path}: skipped, its outputs exist", file=report, flush=True)
      continue
    counts["separated"] += 1
    written_by.update((output, path) for output in written)
    elapsed = time.perf_counter() - start
    where = "stdout" if FLAGS.stdout else _describe(written)
    print(f"{path} -> {where} ({seconds:.1f} s of audio in {elapsed:.1f} s, "
          f"{seconds / max(elapsed, 1e-9):.1f}x real time)", file=report, flush=True)
  summary = ", ".join(f"{n} {what}" for what, n in counts.items())
  if len(inputs) > 1 or counts["skipped"]:
    print(summary, file=report, flush=True)
  if counts["failed"]:
    raise RuntimeError(f"{counts['failed']} of {len(inputs)} input(s) failed")


def _describe(paths):
  """``folder/{a,b}.wav`` when the stems share a folder and extension, else the paths."""
  folders = {os.path.dirname(p) for p in paths}
  extensions = {os.path.splitext(p)[1] for p in paths}
  if len(folders) == 1 and len(extensions) == 1 and len(paths) > 1:
    names = ",".join(os.path.splitext(os.path.basename(p))[0] for p in paths)
    return f"{folders.pop()}/{{{names}}}{extensions.pop()}"
  return ", ".join(paths)


def _check_not_written(path, track, options, stems, written_by):
  """An input whose outputs another input wrote in this run (two files of one name) fails, naming both."""
  from wave_unet_tf.separation.separator import track_name
  for output in options.paths(FLAGS.output_dir, track or track_name(path), stems).values():
    if output in written_by:
      fix = "use {track} in --filename" if "{track}" not in options.filename else \
          "separate it in another run with another --output_dir"
      raise ValueError(f"{path}: would overwrite {output}, written from {written_by[output]} in this run; {fix}")


def _main_live(inputs):
  """``--block_frames N - --stdout=SOURCE``: a live stream from stdin to stdout."""
  if inputs != ["-"] or not FLAGS.stdout:
    raise cli.UsageError(f"--block_frames={FLAGS.block_frames}: streams stdin to stdout; give the input '-' "
                         "and --stdout=SOURCE")
  cli.fetch_named_model(FLAGS.model)
  cli.start_tensorflow(FLAGS.compile_cache if FLAGS.jit_compile else None)
  from wave_unet_tf.runtime import use_device
  from wave_unet_tf.separation.live import run_live
  use_device(FLAGS.device)
  run_live(FLAGS.model, FLAGS.block_frames, FLAGS.stdout, sys.stdin.buffer, sys.stdout.buffer,
           jit_compile=FLAGS.jit_compile, precision=FLAGS.precision)


def run():
  cli.run(main, HELP_GROUPS)


if __name__ == "__main__":
  run()
