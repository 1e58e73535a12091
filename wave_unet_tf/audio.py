"""Audio files in and out: soundfile (libsndfile) first, ffmpeg for everything else; soxr for resampling.

Waveforms are float32 ``[samples, channels]`` everywhere in the project.
"""

import os
import shutil
import subprocess

import numpy as np
import soundfile
import soxr

from wave_unet_tf.files import atomic_output

CODECS = {"wav": "WAV", "flac": "FLAC", "ogg": "OGG", "mp3": "MP3"}
# What a folder given to separate is searched for.
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".mp4", ".aac", ".aif", ".aiff",
                    ".wma", ".webm", ".mka", ".caf", ".w64", ".ac3", ".alac", ".ape", ".wv")


class AudioError(ValueError):
  """An audio file that is missing, unreadable, empty or not something the models can take."""


def _ffmpeg_decode(path):
  """Decodes any file ffmpeg reads (MP4/AAC stems, M4A, ...) to float32 via a WAV pipe."""
  if shutil.which("ffmpeg") is None:
    raise AudioError(f"{path}: libsndfile cannot read it and ffmpeg is not installed "
                     f"(install it: apt-get install -y ffmpeg)")
  cmd = ["ffmpeg", "-nostdin", "-v", "error", "-i", path, "-map", "0:a:0", "-f", "wav", "-acodec", "pcm_f32le", "-"]
  result = subprocess.run(cmd, capture_output=True)
  if result.returncode != 0 or not result.stdout:
    reason = result.stderr.decode(errors="replace").strip().splitlines()
    raise AudioError(f"{path}: unreadable audio ({reason[-1] if reason else 'ffmpeg found no audio stream'})")
  with soundfile.SoundFile(_BytesReader(result.stdout)) as f:
    return f.read(dtype="float32", always_2d=True), f.samplerate


class _BytesReader:
  """A seekable file object over bytes (soundfile needs ``seek``/``tell``/``read``)."""

  def __init__(self, data):
    import io
    self._buffer = io.BytesIO(data)
    self.read, self.seek, self.tell = self._buffer.read, self._buffer.seek, self._buffer.tell


def info(path):
  """``(sample_rate, channels, frames)`` of an audio file, without decoding it where libsndfile can."""
  try:
    i = soundfile.info(path)
    return i.samplerate, i.channels, i.frames
  except Exception:
    waveform, rate = load(path)
    return rate, waveform.shape[1], waveform.shape[0]


def load(path, sample_rate=None, channels=None):
  """Reads ``path`` as float32 ``[samples, channels]``.

  Args:
    path: any file soundfile or ffmpeg reads.
    sample_rate: resample to this rate (soxr) if given.
    channels: 1 downmixes stereo by averaging, 2 duplicates mono; None keeps the file's channels.

  Returns:
    ``(waveform, sample_rate)``.

  Raises:
    AudioError: missing, unreadable, empty, more than two channels, or NaN/Inf samples; the message names
      the file.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise AudioError(f"{path}: no such audio file")
  try:
    waveform, rate = soundfile.read(path, dtype="float32", always_2d=True)
  except Exception:
    waveform, rate = _ffmpeg_decode(path)
  check_waveform(waveform, path)
  if sample_rate is not None and rate != sample_rate:
    waveform, rate = resample(waveform, rate, sample_rate), sample_rate
  if channels is not None:
    waveform = convert_channels(waveform, channels)
  return waveform, rate


def check_waveform(waveform, name):
  """Raises `AudioError` naming ``name`` unless ``waveform`` is a finite, non-empty mono or stereo signal."""
  if waveform.ndim != 2 or waveform.shape[0] == 0:
    raise AudioError(f"{name}: no audio samples")
  if waveform.shape[1] > 2:
    raise AudioError(f"{name}: {waveform.shape[1]} channels; only mono and stereo are supported")
  if not np.all(np.isfinite(waveform)):
    raise AudioError(f"{name}: contains NaN or Inf samples")


def convert_channels(waveform, channels):
  """Downmixes to mono by averaging or duplicates mono to stereo; ``[samples, channels]``."""
  if waveform.shape[1] == channels:
    return waveform
  if channels == 1:
    return waveform.mean(axis=1, keepdims=True)
  if waveform.shape[1] == 1:
    return np.repeat(waveform, channels, axis=1)
  raise AudioError(f"cannot turn {waveform.shape[1]} channels into {channels}")


def resample(waveform, from_rate, to_rate):
  """soxr's high-quality resampling of ``[samples, channels]``."""
  if from_rate == to_rate:
    return waveform
  return soxr.resample(waveform, from_rate, to_rate, quality="HQ").astype(np.float32, copy=False)


def save(path, waveform, sample_rate, codec=None):
  """Writes ``[samples, channels]`` to ``path`` through a temporary file and a rename, so a crash or a full disk
  never leaves a partial file. ``codec`` defaults to the file extension."""
  path = os.fspath(path)
  codec = (codec or os.path.splitext(path)[1].lstrip(".")).lower()
  if codec not in CODECS:
    raise AudioError(f"{path}: unsupported codec {codec!r}; choose one of {', '.join(CODECS)}")
  subtype = "FLOAT" if codec == "wav" else None
  with atomic_output(path, suffix="." + codec) as tmp:
    soundfile.write(tmp, np.asarray(waveform, np.float32), sample_rate, format=CODECS[codec], subtype=subtype)
  return path
