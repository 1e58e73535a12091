"""Separating whole songs: any rate and channel count in, one waveform per source out, seamlessly."""

import os
from typing import BinaryIO, Callable, Dict, Optional, Sequence, Tuple

import numpy as np

from wave_unet_tf import audio, runtime, sizes
from wave_unet_tf.separation import outputs, windows
from wave_unet_tf.separation.forward import ForwardPass, as_forward_pass

# Most output seconds per forward pass. Longer windows waste less compute on context (each window also reads
# the model's context, ~3 s at 44.1 kHz) but hold more activations (benchmarks/separate.py, docs/performance.md).
DEFAULT_WINDOW_SECONDS = 30.0
DEFAULT_BATCH_SIZE = 1
# On an accelerator the windows are sized to its free memory instead (`device_window_seconds`): this share of it
# for one window's activations, so that a song of several minutes takes one pass.
DEVICE_MEMORY_SHARE = 0.5
MAX_WINDOW_SECONDS = 3600.0


class Separator:
  """Separates songs with a Wave-U-Net.

  Args:
    model_or_path: a `WaveUNet`, a path `wave_unet_tf.load_model` reads, or any `ForwardPass`.
    window_seconds: output audio per forward pass, in seconds at the model's rate. The result does not
      depend on it (beyond float rounding); speed and memory do. Default: 30 s on a CPU; on a GPU, as long
      as half its free memory holds (`device_window_seconds`), so that a whole song takes one pass.
    batch_size: frames per forward pass.
    jit_compile: compile Keras models with XLA.
    precision: ``float32`` (the model as it is, in process: exact), ``float16`` or ``int8``: the model
      converted once to TFLite with weights of that type (`wave_unet_tf.precision`), windows of
      ``window_seconds``; needs a Keras model (or a source `wave_unet_tf.load_model` reads as one).

  >>> sep = Separator("checkpoints/M5-HighSR.keras")
  >>> stems = sep.separate(waveform, 44100)   # [samples, channels] -> {source: [samples, channels]}
  """

  def __init__(self, model_or_path, window_seconds: Optional[float] = None,
               batch_size: int = DEFAULT_BATCH_SIZE, jit_compile: bool = True, precision: str = "float32"):
    if window_seconds is not None and window_seconds <= 0:
      raise ValueError(f"window_seconds={window_seconds}: must be positive")
    if batch_size < 1:
      raise ValueError(f"batch_size={batch_size}: must be a positive integer")
    from wave_unet_tf import precision as precisions
    self.precision = precisions.check(precision)
    with runtime.native_logs_filtered():  # TensorFlow's, its converter's and LiteRT's start-up lines
      if self.precision == precisions.DEFAULT:
        self.forward_pass: ForwardPass = as_forward_pass(model_or_path, jit_compile=jit_compile)
      else:
        self.forward_pass = precisions.forward_pass(model_or_path, self.precision,
                                                    window_seconds or DEFAULT_WINDOW_SECONDS)
    self.config = self.forward_pass.config
    if window_seconds is None:
      window_seconds = (device_window_seconds(self.config) if self.precision == precisions.DEFAULT
                        else DEFAULT_WINDOW_SECONDS)
    self.window_seconds = float(window_seconds)
    self.batch_size = self.forward_pass.batch_size or int(batch_size)

  @property
  def source_names(self):
    return self.config.source_names

  def plan(self, song_frames: int) -> windows.WindowPlan:
    """The frames for a song of ``song_frames`` samples at the model's rate."""
    return windows.plan_windows(self.config, song_frames,
                               output_frames=round(self.window_seconds * self.config.sample_rate),
                               input_frames=self.forward_pass.input_frames)

  def separate(self, waveform: np.ndarray, sample_rate: int, name: str = "waveform",
               progress: Optional[Callable[[int, int], None]] = None) -> Dict[str, np.ndarray]:
    """Separates one song.

    Args:
      waveform: ``[samples, channels]`` (or ``[samples]``), mono or stereo, any rate.
      sample_rate: its rate in Hz.
      name: what error messages call it (e.g. the file name).
      progress: called as ``progress(frames_done, num_frames)`` after each batch.

    Returns:
      ``{source: float32 [samples, channels]}`` at the input's rate, length and channel count.

    Raises:
      wave_unet_tf.audio.AudioError: empty, more than two channels, NaN or Inf samples.
    """
    waveform = np.asarray(waveform, np.float32)
    if waveform.ndim == 1:
      waveform = waveform[:, None]
    audio.check_waveform(waveform, name)
    if not sample_rate or sample_rate <= 0:
      raise ValueError(f"{name}: sample rate {sample_rate} must be positive")
    samples, channels = waveform.shape
    if not np.any(waveform):
      # Silence in, silence out: a model's biases would otherwise add a faint hum.
      if progress:
        progress(1, 1)
      return {source: np.zeros_like(waveform) for source in self.source_names}

    mix = audio.convert_channels(waveform, self.config.num_channels)
    # A few samples at a high rate may resample to none at the model's; zeros keep one sample at least.
    shortest = -(-2 * sample_rate // self.config.sample_rate)
    if samples < shortest:
      mix = np.pad(mix, [(0, shortest - samples), (0, 0)])
    mix = audio.resample(mix, sample_rate, self.config.sample_rate)
    while True:
      try:
        estimates = self.separate_at_model_rate(mix, progress)
        break
      except Exception as e:
        if not self._smaller_windows_after(e):
          raise
    del mix  # a resampled copy of the song: freed before the estimates are resampled back

    results = {}
    for source in self.source_names:
      estimate = audio.resample(estimates.pop(source), self.config.sample_rate, sample_rate)
      results[source] = _restore_channels(_fit_length(estimate, samples), channels)
    return results

  def separate_file(self, path: str, output_dir: str, *, offset: float = 0.0, duration: Optional[float] = None,
                    track: Optional[str] = None, stdout: Optional[BinaryIO] = None, stdin: Optional[BinaryIO] = None,
                    progress: Optional[Callable[[float], None]] = None,
                    **options) -> Tuple[Dict[str, str], Optional[float]]:
    """Separates the file ``path`` (any format soundfile or ffmpeg reads; ``-``: a stream on ``stdin``) into
    one file per stem at its rate, length and channel count, in constant memory: read, separated and written
    block by block (`wave_unet_tf.separation.pipeline`). At the model's rate the result equals one forward
    pass over the whole song; at other rates it matches `separate` within soxr's streaming tolerance.

    Args:
      path: the input file, or ``-``.
      output_dir: the folder the ``filename`` template is under.
      offset, duration: separate only this part, in seconds.
      track: the template's ``{track}`` (default: the file name without extensions).
      stdout: with a single stem, write it there as a float WAV stream instead of a file.
      stdin: the stream ``-`` reads (default: this process's stdin).
      progress: called with the seconds of audio read so far.
      **options: `OutputOptions` fields, with the command's defaults: ``stems``, ``two_stems``, ``codec``
        (wav|flac|ogg|mp3|m4a), ``bit_depth``, ``bitrate``, ``clip``, ``filename`` ({track}/{stem}.{ext}),
        ``skip_existing``; or ``options=OutputOptions(...)``.

    Returns:
      ``({stem: written path or '-'}, seconds of audio)``; seconds is None when ``skip_existing`` found
      every output there.

    Raises:
      wave_unet_tf.audio.AudioError: the input is missing, unreadable, or fails to decode part-way (named
        with the time); no output is left under its final name.
      ValueError: an option the model or the input cannot take, named as the command's flag.
    """
    import sys

    from wave_unet_tf.separation import pipeline
    output_options = options.pop("options", None) or outputs.OutputOptions(**options)
    stem_sources = output_options.stem_sources(self.source_names)
    if stdout is not None:
      if len(stem_sources) != 1:
        raise ValueError(f"--stdout: writes one stem; {len(stem_sources)} asked for")
      paths = {stem: "-" for stem in stem_sources}
    else:
      paths = output_options.paths(output_dir, track or track_name(path), stem_sources)
      if output_options.skip_existing and all(os.path.isfile(p) for p in paths.values()):
        return paths, None
    created = _make_folders(path, paths.values())
    try:
      while True:
        source = pipeline.AudioSource(path, stdin=stdin if stdin is not None else getattr(sys.stdin, "buffer", None),
                                      offset=offset, duration=duration)
        try:
          seconds = pipeline.separate_stream(self, source, paths, output_options, stem_sources, stdout, progress)
          break
        except Exception as e:  # out of memory: smaller windows, the same result
          if path == "-" or stdout is not None or not self._smaller_windows_after(e):
            raise
        finally:
          source.close()
    except BaseException:
      for folder in reversed(created):  # a failed input leaves nothing behind
        if os.path.isdir(folder) and not os.listdir(folder):
          os.rmdir(folder)
      raise
    return paths, seconds

  def _smaller_windows_after(self, error: Exception) -> bool:
    """After an out-of-memory ``error``, halves the windows (frames never change the result) and says so
    once; False when it was another error or the windows cannot shrink."""
    if not _out_of_memory(error) or self.forward_pass.input_frames is not None:
      return False
    smallest = sizes.grid(self.config) / self.config.sample_rate
    if self.window_seconds / 2 < smallest:
      return False
    self.window_seconds /= 2
    runtime.notice("out of memory: the windows are halved until they fit (the result does not change; "
                   "--window_seconds sets their size)")
    return True

  def separate_at_model_rate(self, mix: np.ndarray, progress=None) -> Dict[str, np.ndarray]:
    """``mix`` ``[samples, num_channels]`` at the model's rate -> ``{source: [samples, num_channels]}``."""
    plan = self.plan(mix.shape[0])
    estimates = {source: np.zeros(mix.shape, np.float32) for source in self.source_names}
    done = 0
    for frames in plan.batches(self.batch_size):
      outputs = self.forward_pass.forward(plan.gather(mix, frames, self.batch_size))
      for source in self.source_names:
        plan.scatter(np.asarray(outputs[source]), frames, estimates[source])
      done += len(frames)
      if progress:
        progress(done, plan.num_windows)
    return estimates


def device_window_seconds(config) -> float:
  """The default window for the device the backend computes on: 30 s on a CPU (longer windows gain little
  there), else what `DEVICE_MEMORY_SHARE` of the accelerator's free memory holds of the model's activations
  (`sizes.activation_bytes_per_second`), between 30 s and an hour."""
  from wave_unet_tf.backends import devices
  free = devices.free_memory()
  if not free:
    return DEFAULT_WINDOW_SECONDS
  seconds = DEVICE_MEMORY_SHARE * free / sizes.activation_bytes_per_second(config)
  return float(min(MAX_WINDOW_SECONDS, max(DEFAULT_WINDOW_SECONDS, seconds)))


def _fit_length(waveform, samples):
  """Resampling there and back can be off by a sample; cut or zero-pad to exactly ``samples``."""
  if waveform.shape[0] >= samples:
    return waveform[:samples]
  return np.pad(waveform, [(0, samples - waveform.shape[0]), (0, 0)])


def _restore_channels(estimate, channels):
  """A stereo model's estimate for a mono song is averaged back to mono; a mono model's estimate for a
  stereo song is duplicated to both channels."""
  if estimate.shape[1] == channels:
    return np.ascontiguousarray(estimate, np.float32)
  return np.ascontiguousarray(audio.convert_channels(estimate, channels), np.float32)


def track_name(path: str) -> str:
  """The folder a file's stems go to: its name without extensions (MUSDB's ``name.stem.mp4`` gives
  ``name``); ``stdin`` for ``-``."""
  if path == "-":
    return "stdin"
  stem = os.path.splitext(os.path.basename(path))[0]
  return stem[:-len(".stem")] if stem.endswith(".stem") else stem


def _make_folders(path, outputs_paths):
  """Creates the output files' folders; returns those it created, deepest last."""
  created = []
  for folder in sorted({os.path.dirname(p) for p in outputs_paths if p != "-"}):
    missing = []
    while folder and not os.path.isdir(folder):
      missing.append(folder)
      folder = os.path.dirname(folder)
    for folder in reversed(missing):
      try:
        os.mkdir(folder)
      except FileExistsError:
        continue
      except OSError as e:
        raise OSError(f"{path}: cannot create output folder {folder} ({e.strerror or e})") from None
      created.append(folder)
  return created


def _out_of_memory(error: Exception) -> bool:
  """The backend's out-of-memory errors, also when XLA or Keras wrapped them."""
  from wave_unet_tf.backends import devices
  return devices.out_of_memory(error)
