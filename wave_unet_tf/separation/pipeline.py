"""Separating files of any length in constant memory: one chain of small stages the song travels once.

    read blocks -> model channels -> resample -> windows on the grid -> forward pass -> stitch
        -> resample back -> input channels -> write

- `read_blocks`: soundfile reads what libsndfile reads block by block; everything else (MP4/AAC stems, M4A,
  a stream on stdin) is decoded by ffmpeg into a WAV stream on a pipe.
- `Resampler`: soxr's streaming resampler, in front of the model and behind it.
- `WindowStream`: the song as the windows see it (zeros, the song, zeros), cut on the model's grid with each
  window's context taken from the blocks around it; the same windows as `windows.plan_windows`, so the
  result equals one forward pass over the whole song.
- `StemWriters`: one file per source, written as the blocks come under a temporary name and renamed when
  the song is complete, so a failure or a kill never leaves a partial file under its final name.

A reader thread decodes and resamples ahead and a writer thread encodes behind, each through a short
queue, so the forward passes run while the audio is read and written, and memory stays that of a few
windows whatever the song's length.
"""

import contextlib
import os
import queue
import sys
import threading
from typing import Callable, Dict, Iterator, Optional, Sequence

import numpy as np
import soundfile
import soxr

from wave_unet_tf import audio
from wave_unet_tf.files import atomic_output
from wave_unet_tf.separation import outputs, windows

READ_FRAMES = audio.READ_FRAMES  # samples per block read: large enough to keep per-block costs small, ~1.5 s at 44.1 kHz
QUEUE_BLOCKS = 4  # blocks a thread may run ahead


class AudioSource:
  """An input read block by block: ``sample_rate``, ``channels``, ``frames`` (None for a stream) and
  `blocks` ``[n, channels]`` float32, from ``offset`` seconds on and at most ``duration`` seconds of it.
  Decoding errors name the file and the time where they happened."""

  def __init__(self, path: str, stdin=None, offset: float = 0.0, duration: Optional[float] = None):
    self.path = path
    self._decoder = None
    if path == "-":
      # A stream has no file size to hold its header to: it is read as far as it goes.
      self._open_ffmpeg(stdin, None)
    elif not os.path.isfile(path):
      raise audio.AudioError(f"{path}: no such audio file")
    else:
      self._file = audio.open_soundfile(path)  # header checked: rate, channels, truncation
      if self._file is None:  # not for libsndfile: ffmpeg decodes it
        self._open_ffmpeg(None, path)
      else:
        self.sample_rate, self.channels, self.frames = self._file.samplerate, self._file.channels, self._file.frames
    self._select(offset or 0.0, duration)

  def _open_ffmpeg(self, stdin, path):
    import tempfile

    from wave_unet_tf.separation.live import WavStreamReader, decode_with_ffmpeg
    self._file = None
    self._errors = tempfile.TemporaryFile()  # ffmpeg's reason, should it fail (a file: no pipe to keep drained)
    self._decoder = decode_with_ffmpeg(stdin, path, stderr=self._errors)
    try:
      self._reader = WavStreamReader(self._decoder.stdout, name=self.path)
    except audio.AudioError:
      self._decoder.stdout.close()  # first: an ffmpeg still writing must not block the wait
      self._decoder.wait()
      reason = self._ffmpeg_reason()
      self.close()
      raise audio.AudioError(f"{self.path}: unreadable audio ({reason})") from None
    self.sample_rate, self.channels, self.frames = self._reader.sample_rate, self._reader.channels, None
    try:
      audio.check_format(self.path, self.sample_rate, self.channels)
    except audio.AudioError:
      self.close()
      raise

  def _ffmpeg_reason(self):
    self._errors.seek(0)
    return audio.ffmpeg_reason(self._errors.read(4096), "pipe:0" if self.path == "-" else self.path)

  def _select(self, offset, duration):
    """The part from ``offset`` for ``duration`` seconds: libsndfile seeks there, ffmpeg's output is skipped."""
    if offset < 0:
      raise ValueError(f"--offset={offset}: must not be negative")
    if duration is not None and duration <= 0:
      raise ValueError(f"--duration={duration}: must be positive")
    self.offset = offset
    self._skip = round(offset * self.sample_rate)
    self._limit = None if duration is None else max(1, round(duration * self.sample_rate))
    if self.frames is not None:
      if self._skip >= self.frames > 0:
        raise audio.AudioError(f"{self.path}: --offset={offset} s is past its end ({self.frames / self.sample_rate:.1f} s)")
      if self._skip:
        self._file.seek(self._skip)
        self.frames -= self._skip
        self._skip = 0
      self.frames = self.frames if self._limit is None else min(self.frames, self._limit)

  def blocks(self, frames: Optional[int] = None) -> Iterator[np.ndarray]:
    frames = frames or READ_FRAMES
    done = 0
    skip, left, seen = self._skip, self._limit, 0
    if self._file is not None:
      chunks = audio.read_blocks(self._file, self.path, frames)  # bounded reads, whatever the header says
    else:
      chunks = self._reader.chunks(frames)
    try:
      for chunk in chunks:
        seen += len(chunk)
        if skip:
          chunk, skip = chunk[skip:], max(0, skip - len(chunk))
        if left is not None:
          chunk, left = chunk[:left], left - min(left, len(chunk))
        if not np.all(np.isfinite(chunk)):
          raise ValueError("NaN or Inf samples")
        done += len(chunk)
        if len(chunk):
          yield chunk
        if left == 0:
          break
    except audio.AudioError:
      raise
    except Exception as e:  # numpy errors, a broken pipe
      raise audio.AudioError(f"{self.path}: decoding failed at {self.offset + done / self.sample_rate:.1f} s "
                             f"({' '.join(str(e).split())})") from None
    # (Stopped early by --duration, ffmpeg is still writing: `close` ends it.)
    if self._decoder is not None and left != 0 and self._decoder.wait():
      raise audio.AudioError(f"{self.path}: decoding failed at {self.offset + done / self.sample_rate:.1f} s "
                             f"({self._ffmpeg_reason()})")
    if done == 0 and self.offset:
      raise audio.AudioError(f"{self.path}: --offset={self.offset} s is past its end ({seen / self.sample_rate:.1f} s)")
    if done == 0:
      raise audio.AudioError(f"{self.path}: no audio samples")

  def close(self):
    if self._file is not None:
      self._file.close()
    if self._decoder is not None:
      self._decoder.stdout.close()
      if self._decoder.poll() is None:
        self._decoder.kill()
      self._decoder.wait()
      self._errors.close()


class Resampler:
  """soxr's streaming resampler (identity when the rates agree); ``[n, channels]`` blocks in and out."""

  def __init__(self, from_rate: int, to_rate: int, channels: int):
    self._stream = None if from_rate == to_rate else soxr.ResampleStream(from_rate, to_rate, channels,
                                                                         dtype="float32", quality="HQ")

  def __call__(self, block: np.ndarray, last: bool = False) -> np.ndarray:
    if self._stream is None:
      return block
    return self._stream.resample_chunk(np.ascontiguousarray(block, np.float32), last=last)


class WindowStream:
  """Cuts a stream at the model's rate and channels into the windows of ``plan`` and stitches their kept
  outputs: `push` any number of samples, `finish` at the end; both return ``{source: [n, channels]}``, the
  song's separated samples in order.

  Window ``k`` reads the padded song from ``k * stride``: the buffer holds the padded song from the next
  window's start, so each window's context comes from the blocks around it.
  """

  def __init__(self, forward_pass, plan: windows.WindowPlan, batch_size: int):
    self.forward_pass, self.plan, self.batch_size = forward_pass, plan, batch_size
    self.sources = forward_pass.config.source_names
    channels = forward_pass.config.num_channels
    self._buffer = np.zeros((plan.context_before, channels), np.float32)  # the padding before the song
    self._pending = []  # windows waiting for a full batch
    self._song_frames = 0
    self._emitted = 0

  def push(self, block: np.ndarray) -> Dict[str, np.ndarray]:
    self._song_frames += len(block)
    self._buffer = np.concatenate([self._buffer, block.astype(np.float32, copy=False)])
    return self._cut(final=False)

  def finish(self) -> Dict[str, np.ndarray]:
    """The rest: zeros after the song until every song sample has had its window."""
    needed = -(-self._song_frames // self.plan.stride)  # windows covering the song
    produced = self._emitted // self.plan.stride + len(self._pending)
    missing = (needed - produced - 1) * self.plan.stride + self.plan.input_frames - len(self._buffer)
    if missing > 0:
      self._buffer = np.concatenate([self._buffer, np.zeros((missing, self._buffer.shape[1]), np.float32)])
    return self._cut(final=True, windows_left=needed - produced)

  def _cut(self, final, windows_left=None):
    p = self.plan
    outputs = {s: [] for s in self.sources}
    while len(self._buffer) >= p.input_frames and (windows_left is None or windows_left > 0):
      self._pending.append(self._buffer[:p.input_frames])
      self._buffer = self._buffer[p.stride:]
      windows_left = None if windows_left is None else windows_left - 1
      if len(self._pending) == self.batch_size:
        self._run(outputs)
    if final and self._pending:
      self._run(outputs)
    return {s: np.concatenate(o) if o else np.zeros((0, self._buffer.shape[1]), np.float32)
            for s, o in outputs.items()}

  def _run(self, outputs):
    p = self.plan
    batch = np.zeros((self.batch_size, p.input_frames, self._buffer.shape[1]), np.float32)
    batch[:len(self._pending)] = self._pending
    results = self.forward_pass.forward(batch)
    for row in range(len(self._pending)):
      kept = min(p.stride, self._song_frames - self._emitted)
      for s in self.sources:
        outputs[s].append(np.asarray(results[s][row, p.keep_offset:p.keep_offset + kept]))
      self._emitted += kept
    self._pending = []


class StemWriters:
  """One output per stem, written block by block under temporary names and renamed together on leaving (a
  context manager: an error or a kill leaves no file under a final name).

  ``paths``: ``{stem: path}``; a path ``-`` writes that stem to ``stdout`` as a float WAV stream.
  """

  def __init__(self, paths: Dict[str, str], sample_rate: int, channels: int, options: outputs.OutputOptions,
               stdout=None):
    self.paths, self.sample_rate, self.channels, self.options = paths, sample_rate, channels, options
    self._stack = contextlib.ExitStack()
    self._files, self._stdout = {}, stdout

  def __enter__(self):
    try:
      self._open()
    except BaseException:
      # The temporary files opened so far are removed; a full disk is said so (`atomic_output`).
      if not self._stack.__exit__(*sys.exc_info()):
        raise
    return self

  def _open(self):
    from wave_unet_tf.separation.live import wav_stream_header
    for stem, path in self.paths.items():
      if path == "-":
        self._stdout.write(wav_stream_header(self.sample_rate, self.channels))
        continue
      tmp = self._stack.enter_context(atomic_output(path, suffix="." + self.options.codec))
      self._files[stem] = outputs.StemFile(tmp, self.sample_rate, self.channels, self.options, name=path)
      self._stack.callback(self._files[stem].close)

  def write(self, blocks: Dict[str, np.ndarray]):
    for stem, block in blocks.items():
      if not len(block):
        continue
      if self.paths[stem] == "-":
        block = np.clip(block, -1.0, 1.0) if self.options.clip == "clamp" else block
        self._stdout.write(np.ascontiguousarray(block, np.float32).tobytes())
        self._stdout.flush()
      else:
        self._files[stem].write(block)

  def rewrite_silence(self, frames: int):
    """Silence in, silence out (as `Separator.separate`): the model's biases would otherwise add a faint hum.
    The files are still under their temporary names, so they are written again as zeros before the rename."""
    for stem_file in self._files.values():
      stem_file.rewrite_silence(frames, READ_FRAMES)

  def __exit__(self, *exc):
    return self._stack.__exit__(*exc)  # files closed, then renamed (or removed on an error)


def run_in_thread(blocks: Iterator, maxsize: int = QUEUE_BLOCKS) -> Iterator:
  """Yields ``blocks``, produced ahead in a thread (an error in it is raised here)."""
  items = queue.Queue(maxsize)
  done = object()

  def produce():
    try:
      for block in blocks:
        items.put(block)
      items.put(done)
    except BaseException as e:  # handed over to the consumer
      items.put(e)

  thread = threading.Thread(target=produce, daemon=True)
  thread.start()
  while True:
    item = items.get()
    if item is done:
      return
    if isinstance(item, BaseException):
      raise item
    yield item


class _Writer:
  """Consumes ``{source: block}`` in a thread and hands them to ``write``; `close` waits and re-raises."""

  def __init__(self, write: Callable[[Dict[str, np.ndarray]], None]):
    self._items = queue.Queue(QUEUE_BLOCKS)
    self._error = None
    self._thread = threading.Thread(target=self._consume, args=(write,), daemon=True)
    self._thread.start()

  def _consume(self, write):
    while True:
      item = self._items.get()
      if item is None:
        return
      if self._error is None:
        try:
          write(item)
        except BaseException as e:
          self._error = e

  def put(self, item):
    if self._error is not None:
      raise self._error
    self._items.put(item)

  def close(self):
    self._items.put(None)
    self._thread.join()
    if self._error is not None:
      raise self._error


def separate_stream(separator, source: AudioSource, paths: Dict[str, str],
                    options: outputs.OutputOptions = outputs.OutputOptions(),
                    stem_sources: Optional[Dict[str, Sequence[str]]] = None, stdout=None,
                    progress: Optional[Callable[[float], None]] = None) -> float:
  """Separates ``source`` into ``paths`` (``{stem: path or '-'}``) through the chain above; a stem is the sum of
  the sources ``stem_sources`` names for it (default: each stem is the source of its name), added at the
  model's rate.

  Returns:
    The song's length in seconds.
  """
  config = separator.config
  model_rate, model_channels = config.sample_rate, config.num_channels
  rate, channels = source.sample_rate, source.channels
  stem_sources = stem_sources or {stem: (stem,) for stem in paths}
  if any(path != "-" for path in paths.values()):
    options.check_rate(rate, source.path)
  song_frames = None if source.frames is None else max(1, round(source.frames * model_rate / rate))
  plan = separator.plan(song_frames or 10 ** 12)  # a stream of unknown length: the longest window
  cut = WindowStream(separator.forward_pass, plan, separator.batch_size)
  to_model = Resampler(rate, model_rate, model_channels)
  from_model = {stem: Resampler(model_rate, rate, model_channels) for stem in paths}
  counts = {"in": 0, "out": 0, "silent": True}

  def model_blocks():
    for block in source.blocks():
      counts["in"] += len(block)
      counts["silent"] = counts["silent"] and not np.any(block)
      yield to_model(audio.convert_channels(block, model_channels))
    yield to_model(np.zeros((0, model_channels), np.float32), last=True)

  def back(estimates, last=False):
    """Model-rate estimates -> stems at the input's rate and channels, and no more samples than came in."""
    blocks = {stem: from_model[stem](outputs.stem_samples(estimates, sources), last=last)
              for stem, sources in stem_sources.items()}
    blocks = {s: audio.convert_channels(b, channels) if b.shape[1] != channels else b for s, b in blocks.items()}
    if last:  # resampling there and back can be a sample short: zeros make up the input's length
      short = counts["in"] - counts["out"] - len(next(iter(blocks.values())))
      if short > 0:
        blocks = {s: np.concatenate([b, np.zeros((short, channels), np.float32)]) for s, b in blocks.items()}
    keep = counts["in"] - counts["out"] if last else None
    blocks = {s: b[:keep] if keep is not None else b for s, b in blocks.items()}
    counts["out"] += len(next(iter(blocks.values())))
    return blocks

  with StemWriters(paths, rate, channels, options, stdout) as writers:
    writer = _Writer(writers.write)
    try:
      for block in run_in_thread(model_blocks()):
        writer.put(back(cut.push(block)))
        if progress:
          progress(counts["in"] / rate)
      writer.put(back(cut.finish(), last=True))
    finally:
      writer.close()
    if counts["silent"]:
      writers.rewrite_silence(counts["in"])
  return counts["in"] / rate
