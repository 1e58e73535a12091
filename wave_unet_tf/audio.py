"""Audio files in and out: soundfile (libsndfile) first, ffmpeg for everything else; soxr for resampling.

Waveforms are float32 ``[samples, channels]`` everywhere in the project.
"""

import os
import re
import shutil
import struct
import subprocess

import numpy as np
import soundfile
import soxr

from wave_unet_tf.files import atomic_output

CODECS = {"wav": "WAV", "flac": "FLAC", "ogg": "OGG", "mp3": "MP3"}
# What a folder given to separate is searched for.
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".mp4", ".aac", ".aif", ".aiff",
                    ".wma", ".webm", ".mka", ".caf", ".w64", ".ac3", ".alac", ".ape", ".wv")
READ_FRAMES = 65536  # samples per block read: what a read allocates, whatever the header declares
# Rates a file may have: beyond them a header is damaged, not audio (the presets run at 8192 to 44100 Hz,
# and resampling from 1 Hz would multiply the samples by tens of thousands).
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1000, 1_000_000
_UNKNOWN_WAV_SIZE = 0xFFFFFFFF  # what writers to pipes (ffmpeg) put in a WAV header they cannot patch


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
    raise AudioError(f"{path}: unreadable audio ({ffmpeg_reason(result.stderr, path)})")
  with soundfile.SoundFile(_BytesReader(result.stdout)) as f:
    check_format(path, f.samplerate, f.channels)
    return np.concatenate(list(read_blocks(f, path))), f.samplerate


def ffmpeg_reason(stderr: bytes, path: str = "") -> str:
  """ffmpeg's first error line (the cause; later ones are consequences), without its ``[demuxer @ 0x...]``
  tag or the path it repeats."""
  for line in stderr.decode(errors="replace").splitlines():
    line = re.sub(r"^\[[^\]]* @ 0x[0-9a-f]+\] ", "", line.strip())
    if path and line.startswith(path + ": "):
      line = line[len(path) + 2:]
    if line and not line.startswith("Last message repeated"):
      return "ffmpeg: " + line
  return "ffmpeg found no audio stream"


class _BytesReader:
  """A seekable file object over bytes (soundfile needs ``seek``/``tell``/``read``)."""

  def __init__(self, data):
    import io
    self._buffer = io.BytesIO(data)
    self.read, self.seek, self.tell = self._buffer.read, self._buffer.seek, self._buffer.tell


def info(path):
  """``(sample_rate, channels, frames)`` of an audio file, checked as `open_soundfile` checks it, without
  decoding it where libsndfile can."""
  f = open_soundfile(os.fspath(path))
  if f is None:
    waveform, rate = load(path)
    return rate, waveform.shape[1], waveform.shape[0]
  with f:
    return f.samplerate, f.channels, f.frames


def check_format(name, sample_rate, channels):
  """Raises `AudioError` naming ``name`` unless the rate and channel count are ones a model can take."""
  if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
    raise AudioError(f"{name}: sample rate {sample_rate} Hz is not a usable rate (damaged header?); expected "
                     f"{MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz")
  if not 1 <= channels <= 2:
    raise AudioError(f"{name}: {channels} channels; only mono and stereo are supported")


def open_soundfile(path):
  """libsndfile's reader of the file ``path`` with its header checked, or None for a format libsndfile does
  not read (ffmpeg's then).

  A file cut off (an interrupted copy, a full disk) or whose header declares more audio than it holds is
  refused, not read as far as it goes: silently separating or training on part of a song is worse than
  saying the file is damaged. libsndfile itself shortens such a WAV to the bytes present, so the WAV's
  declared data size is compared with the file's size; for FLAC, whose header declares the sample count,
  the last declared sample must be reachable.

  Raises:
    AudioError: an empty file, a usable format with an unusable rate or channel count, or a damaged file.
  """
  if os.path.getsize(path) == 0:
    raise AudioError(f"{path}: empty file")
  try:
    f = soundfile.SoundFile(path)
  except Exception:  # not for libsndfile, or a header it refuses (ffmpeg gives the reason)
    return None
  try:
    check_format(path, f.samplerate, f.channels)
    if f.frames == 0:
      raise AudioError(f"{path}: no audio samples")
    if f.format in ("WAV", "WAVEX"):
      missing = _wav_missing_bytes(path)
      if missing:
        raise AudioError(f"{path}: truncated or damaged: its header declares {missing} more bytes of audio than "
                         f"the file holds")
    elif f.format == "FLAC":
      try:
        f.seek(f.frames - 1)
        reachable = len(f.read(1)) == 1
        f.seek(0)
      except Exception:
        reachable = False
      if not reachable:
        raise AudioError(f"{path}: truncated or damaged: its header declares {f.frames} samples that cannot all "
                         f"be read")
  except BaseException:
    f.close()
    raise
  return f


def _wav_missing_bytes(path) -> int:
  """Bytes a RIFF WAV's data chunk declares beyond the end of the file (0: none, or a length left unknown).

  Walks the chunk headers only (a handful of small reads), never reading a declared size's worth."""
  size = os.path.getsize(path)
  with open(path, "rb") as f:
    head = f.read(12)
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
      return 0  # RF64 (sizes in ds64) and the rest: libsndfile's own checks
    position = 12
    while position + 8 <= size:
      f.seek(position)
      chunk = f.read(8)
      chunk_id, chunk_size = chunk[:4], struct.unpack("<I", chunk[4:8])[0]
      if chunk_id == b"data":
        if chunk_size == _UNKNOWN_WAV_SIZE:
          return 0
        return max(0, position + 8 + chunk_size - size)
      position += 8 + chunk_size + chunk_size % 2
  return 0


def read_blocks(f, name, frames=READ_FRAMES):
  """Yields float32 ``[n, channels]`` blocks of an open `soundfile.SoundFile` until its audio ends.

  The end is where reading stops, not where the header says: each read asks for ``frames`` at most, and a
  short read ends the loop, so a lying header can neither make one big allocation nor a loop over nothing.

  Raises:
    AudioError: a decoding error (named with the time where it happened) or NaN/Inf samples.
  """
  done = 0
  while True:
    try:
      block = f.read(frames, dtype="float32", always_2d=True)
    except Exception as e:  # libsndfile errors mid-file
      raise AudioError(f"{name}: decoding failed at {done / f.samplerate:.1f} s "
                       f"({' '.join(str(e).split())})") from None
    if not np.all(np.isfinite(block)):
      raise AudioError(f"{name}: contains NaN or Inf samples")
    if len(block):
      yield block
    done += len(block)
    if len(block) < frames:
      return


def load(path, sample_rate=None, channels=None):
  """Reads ``path`` as float32 ``[samples, channels]``.

  Args:
    path: any file soundfile or ffmpeg reads.
    sample_rate: resample to this rate (soxr) if given.
    channels: 1 downmixes stereo by averaging, 2 duplicates mono; None keeps the file's channels.

  Returns:
    ``(waveform, sample_rate)``.

  Raises:
    AudioError: missing, unreadable, empty, truncated or damaged (`open_soundfile`), more than two channels,
      an unusable rate, or NaN/Inf samples; the message names the file.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise AudioError(f"{path}: no such audio file")
  f = open_soundfile(path)
  if f is None:
    waveform, rate = _ffmpeg_decode(path)
  else:
    with f:
      blocks, rate = list(read_blocks(f, path)), f.samplerate
    waveform = np.concatenate(blocks) if blocks else np.zeros((0, 1), np.float32)
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
