r"""wave-unet-separate: separate audio files into one file per source.

  wave-unet-separate --model checkpoints/M5-HighSR.keras --output_dir separated song.mp3 other.wav

writes ``separated/song/accompaniment.wav``, ``separated/song/vocals.wav``, ... at each input's sample
rate, length and channel count. A file that fails is reported and the others are still separated; the
exit status is then 1.
"""

import os
import sys
import time

from absl import flags

from wave_unet_tf import cli
from wave_unet_tf.separation.separator import DEFAULT_BATCH_SIZE, DEFAULT_WINDOW_SECONDS

CODECS = ("wav", "flac", "ogg", "mp3")

flags.DEFINE_string("model", None, "A .keras file, a SavedModel folder, a .tflite file or a training --model_dir.")
flags.DEFINE_string("output_dir", "separated", "Where to write <input stem>/<source>.<codec>.")
flags.DEFINE_enum("codec", "wav", CODECS, "Output format (wav is 32-bit float; flac 16-bit).")
flags.DEFINE_float("window_seconds", DEFAULT_WINDOW_SECONDS, "Output audio per forward pass, in seconds. Changes speed and memory, "
                   "not the result.")
flags.DEFINE_alias("frame_seconds", "window_seconds")  # the flag's first name
flags.DEFINE_integer("batch_size", DEFAULT_BATCH_SIZE, "Windows per forward pass.", lower_bound=1)
flags.DEFINE_bool("jit_compile", True, "Compile the forward pass with XLA (faster on CPU and GPU).")
flags.DEFINE_string("compile_cache", cli.DEFAULT_COMPILE_CACHE, "Folder keeping XLA-compiled forward passes "
                    "between runs ('' for none).")
flags.DEFINE_bool("progress", True, "Show a progress bar per file.")
# Real-time streaming: `--block_frames N - --stdout=SOURCE` separates stdin as it comes.
flags.DEFINE_integer("block_frames", None, "Real-time streaming: samples per block at the model's rate (a "
                     "multiple of 2**num_layers); unset: offline framing. Needs the input '-' and --stdout.")
flags.DEFINE_string("stdout", None, "Write this source to stdout as a WAV stream.")
flags.mark_flag_as_required("model")
FLAGS = flags.FLAGS


def _writable_folder(folder):
  try:
    os.makedirs(folder, exist_ok=True)
  except OSError as e:
    raise OSError(f"--output_dir {folder}: cannot create it ({e.strerror or e})") from None
  if not os.access(folder, os.W_OK | os.X_OK):
    raise OSError(f"--output_dir {folder}: not writable")


def separate_file(separator, path, output_dir, codec, progress=True, stdout=None):
  """Separates one file (or ``-``) with a progress bar on stderr; returns ``(written paths, seconds)``.
  Raises `AudioError`/`OSError` naming the file."""
  from tqdm import tqdm

  import soundfile
  total = None
  if path != "-":  # soundfile would read '-' as stdin
    try:  # the length where the header says it cheaply; ffmpeg's formats go without
      header = soundfile.info(path)
      total = round(header.frames / header.samplerate, 1)
    except Exception:  # the separation itself says what is wrong with the file
      pass
  bar = tqdm(desc=os.path.basename(path), total=total, unit="s", disable=not progress, leave=False,
             file=sys.stderr, bar_format="{l_bar}{bar}| {n:.0f}/{total_fmt} s [{elapsed}<{remaining}]")
  def update(seconds):
    bar.n = round(seconds, 1)
    bar.refresh()
  try:
    stems = [FLAGS.stdout] if stdout is not None else None
    paths, seconds = separator.separate_file(path, output_dir, codec=codec, stems=stems, stdout=stdout,
                                             progress=update)
  finally:
    bar.close()
  return list(paths.values()), seconds


def main(argv):
  inputs = argv[1:]
  if FLAGS.block_frames is not None:
    return _main_live(inputs)
  if not inputs:
    raise cli.UsageError("give one or more audio files to separate")
  if FLAGS.stdout and len(inputs) != 1:
    raise cli.UsageError(f"--stdout={FLAGS.stdout}: give exactly one input (a file or '-')")
  if FLAGS.window_seconds <= 0:
    raise cli.UsageError(f"--window_seconds={FLAGS.window_seconds}: must be positive")
  _writable_folder(FLAGS.output_dir)
  cli.start_tensorflow(FLAGS.compile_cache if FLAGS.jit_compile else None)
  from wave_unet_tf.audio import AudioError
  from wave_unet_tf.separation import Separator
  separator = Separator(FLAGS.model, window_seconds=FLAGS.window_seconds, batch_size=FLAGS.batch_size,
                        jit_compile=FLAGS.jit_compile)

  failures = []
  for path in inputs:
    start = time.perf_counter()
    try:
      written, seconds = separate_file(separator, path, FLAGS.output_dir, FLAGS.codec, FLAGS.progress,
                                       stdout=sys.stdout.buffer if FLAGS.stdout else None)
    except (AudioError, ValueError, OSError, RuntimeError) as e:
      if len(inputs) == 1:
        raise  # its one line is the command's error
      message = " ".join(str(e).split())
      print(f"{os.path.basename(sys.argv[0])}: error: {message}", file=sys.stderr, flush=True)
      failures.append(path)
      continue
    elapsed = time.perf_counter() - start
    where = "stdout" if FLAGS.stdout else f"{os.path.dirname(written[0])}/{{{','.join(separator.source_names)}}}"
    # With --stdout the audio goes to stdout, so the report goes to stderr.
    print(f"{path} -> {where}{'' if FLAGS.stdout else '.' + FLAGS.codec} ({seconds:.1f} s of audio in "
          f"{elapsed:.1f} s, {seconds / max(elapsed, 1e-9):.1f}x real time)",
          file=sys.stderr if FLAGS.stdout else sys.stdout, flush=True)
  if failures:
    raise RuntimeError(f"{len(failures)} of {len(inputs)} input(s) failed: {', '.join(failures)}")


def _main_live(inputs):
  """``--block_frames N - --stdout=SOURCE``: a live stream from stdin to stdout."""
  if inputs != ["-"] or not FLAGS.stdout:
    raise cli.UsageError(f"--block_frames={FLAGS.block_frames}: streams stdin to stdout; give the input '-' "
                         "and --stdout=SOURCE")
  cli.start_tensorflow(FLAGS.compile_cache if FLAGS.jit_compile else None)
  from wave_unet_tf.separation.live import prefer_fast_xla_cpu_runtime, run_live
  prefer_fast_xla_cpu_runtime()
  run_live(FLAGS.model, FLAGS.block_frames, FLAGS.stdout, sys.stdin.buffer, sys.stdout.buffer,
           jit_compile=FLAGS.jit_compile)


def run():
  cli.run(main)


if __name__ == "__main__":
  run()
