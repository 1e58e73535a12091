"""A live stream through a `StreamingSeparator`: audio of any format ffmpeg reads comes in on a pipe, one
source goes out on another as a WAV stream, block by block as it is separated.

    ffmpeg -re -i song.mp3 -f wav - | wave-unet-separate --model m.keras --block_frames 4096 \
        --stdout=accompaniment - | ffplay -nodisp -autoexit -

ffmpeg decodes the input to a float WAV stream (so any container or codec works, and WAV on stdin passes
through unchanged); the output is 32-bit float WAV at the input's rate and channel count. Its header says
"length unknown" (sizes 0xFFFFFFFF, as ffmpeg writes to pipes): a stream has no length to patch in at the
end, which is why it is written here instead of by libsndfile, which seeks back to fill the sizes in.
"""

import struct
import subprocess
from typing import BinaryIO, Callable, Iterator, Optional

import numpy as np

from wave_unet_tf import audio

READ_FRAMES = 1024  # samples per read from the pipe: small, so a block starts as soon as its last sample is in
_UNKNOWN = 0xFFFFFFFF


class WavStreamReader:
  """Reads a float32 or 16-bit PCM WAV stream from a pipe without seeking.

  Attributes:
    sample_rate, channels: from its header.
  """

  def __init__(self, pipe: BinaryIO, name: str = "stdin"):
    self.pipe, self.name = pipe, name
    riff = self._read(12)
    if len(riff) < 12 or riff[:4] not in (b"RIFF", b"RF64") or riff[8:12] != b"WAVE":
      raise audio.AudioError(f"{name}: not a WAV stream")
    while True:
      header = self._read(8)
      if len(header) < 8:
        raise audio.AudioError(f"{name}: no audio samples")
      chunk, size = header[:4], struct.unpack("<I", header[4:])[0]
      if chunk == b"data":
        break
      if chunk != b"fmt ":
        self._skip(size + size % 2)  # in pieces: a chunk's declared size is never allocated at once
        continue
      if not 16 <= size <= 1024:
        raise audio.AudioError(f"{name}: damaged WAV stream (a format chunk of {size} bytes)")
      body = self._read(size + size % 2)
      if len(body) < size:
        raise audio.AudioError(f"{name}: no audio samples")
      code, self.channels, self.sample_rate = struct.unpack("<HHI", body[:8])
      bits = struct.unpack("<H", body[14:16])[0]
      if code == 0xFFFE and size >= 26:  # WAVE_FORMAT_EXTENSIBLE: the real code opens the sub-format GUID
        code = struct.unpack("<H", body[24:26])[0]
      self._dtype = {(3, 32): np.float32, (1, 16): np.int16}.get((code, bits))
      if self._dtype is None:
        raise audio.AudioError(f"{name}: WAV format {code} with {bits} bits; expected float32 or 16-bit PCM")
    if not hasattr(self, "_dtype") or self.channels < 1:
      raise audio.AudioError(f"{name}: damaged WAV stream (no usable format chunk before the data)")
    self._frame_bytes = self.channels * np.dtype(self._dtype).itemsize

  def _skip(self, count):
    while count > 0:
      skipped = len(self._read(min(count, 65536)))
      if not skipped:
        return
      count -= skipped

  def _read(self, count):
    data = b""
    while len(data) < count:
      more = self.pipe.read(count - len(data))
      if not more:
        break
      data += more
    return data

  def chunks(self, frames: int = READ_FRAMES) -> Iterator[np.ndarray]:
    """``[n, channels]`` float32 chunks until the stream ends."""
    while True:
      data = self._read(frames * self._frame_bytes)
      usable = len(data) - len(data) % self._frame_bytes
      if usable:
        samples = np.frombuffer(data[:usable], self._dtype).reshape(-1, self.channels)
        yield samples.astype(np.float32) / (32768.0 if self._dtype == np.int16 else 1.0)
      if len(data) < frames * self._frame_bytes:
        return


def wav_stream_header(sample_rate: int, channels: int) -> bytes:
  """A float32 WAV header with unknown length, for a stream."""
  fmt = struct.pack("<HHIIHH", 3, channels, sample_rate, sample_rate * channels * 4, channels * 4, 32)
  return (b"RIFF" + struct.pack("<I", _UNKNOWN) + b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
          + b"data" + struct.pack("<I", _UNKNOWN))


def decode_with_ffmpeg(source: Optional[BinaryIO], path: Optional[str] = None,
                       stderr=subprocess.DEVNULL) -> subprocess.Popen:
  """ffmpeg reading ``source`` (a pipe), or the file ``path``, in any format it knows and writing its first
  audio stream as a float32 WAV stream to its stdout; its error lines go to ``stderr`` (a file)."""
  try:
    return subprocess.Popen(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-i", path or "pipe:0",
                             "-map", "0:a:0", "-map_metadata", "-1", "-vn", "-f", "wav", "-acodec", "pcm_f32le",
                             "pipe:1"], stdin=source if path is None else subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=stderr)
  except FileNotFoundError:
    raise OSError(f"{path or 'stdin'}: ffmpeg not found; install it to read this input "
                  f"(apt-get install -y ffmpeg)") from None


def stream_live(make_stream: Callable[[int, int], object], reader: WavStreamReader, source: str,
                write: Callable[[bytes], None]) -> int:
  """Separates ``reader``'s stream as it comes and writes ``source`` as a WAV stream through ``write``.

  Args:
    make_stream: ``(sample_rate, channels) -> StreamingSeparator`` (built once the header is read).
    reader: the input stream.
    source: the stem to write: one of the model's sources, or ``no_<source>`` (the sum of the others).
    write: writes bytes (and flushes) to the output.

  Returns:
    The number of samples written (as many as came in).
  """
  from wave_unet_tf.separation.outputs import sources_of_stem, stem_samples
  stream = make_stream(reader.sample_rate, reader.channels)
  sources = sources_of_stem(source, stream.source_names)
  if sources is None:
    raise ValueError(f"--stdout={source}: not a source of this model ({', '.join(stream.source_names)}; or "
                     f"no_<source>, the sum of the others)")

  write(wav_stream_header(reader.sample_rate, reader.channels))
  written = 0
  for chunk in reader.chunks():
    out = stem_samples(stream.push(chunk), sources)
    if len(out):
      write(np.ascontiguousarray(out, np.float32).tobytes())
      written += len(out)
  out = stem_samples(stream.flush(), sources)
  write(np.ascontiguousarray(out, np.float32).tobytes())
  return written + len(out)


def run_live(model, block_frames: Optional[int], source: str, stdin: BinaryIO, stdout: BinaryIO,
             jit_compile: bool = True, precision: str = "float32") -> int:
  """`stream_live` from ``stdin`` (decoded by ffmpeg) to ``stdout``; the command line's ``-`` input."""
  from wave_unet_tf.separation.streaming import StreamingSeparator, as_stream_step

  step = as_stream_step(model, block_frames, jit_compile, precision)  # compiled before the first sample arrives
  decoder = decode_with_ffmpeg(stdin)
  try:
    reader = WavStreamReader(decoder.stdout)

    def write(data):
      stdout.write(data)
      stdout.flush()

    written = stream_live(lambda rate, channels: StreamingSeparator(step, sample_rate=rate, channels=channels),
                          reader, source, write)
  finally:
    decoder.stdout.close()
    status = decoder.wait()
  if status:
    raise audio.AudioError("stdin: ffmpeg could not decode the stream")
  return written
