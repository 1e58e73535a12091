"""What separation writes: which stems, in which format, under which names.

`OutputOptions` holds each option and its default once: `Separator.separate_file` takes them as keyword
arguments and the separate command's flags are generated from its fields (`define_flags`). `StemFile` writes
one stem block by block: WAV and FLAC through libsndfile, the lossy codecs through an ffmpeg encoder.

Pure Python and numpy: the command reads its flags before TensorFlow starts.
"""

import dataclasses
import os
import shutil
import string
import subprocess
import tempfile
import typing
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import soundfile

CODECS = ("wav", "flac", "ogg", "mp3", "m4a")
LOSSLESS = {"wav": "WAV", "flac": "FLAC"}  # libsndfile's format names
# The bit depths each lossless codec holds (WAV 32 is float) and the default, first.
BIT_DEPTHS = {"wav": (32, 16, 24), "flac": (16, 24)}
SUBTYPES = {(codec, 16): "PCM_16" for codec in LOSSLESS} | {(c, 24): "PCM_24" for c in LOSSLESS} | {("wav", 32): "FLOAT"}
# ffmpeg's encoder, muxer and default quality per lossy codec. Quality-based VBR by default: a fixed bitrate
# that suits 44.1 kHz stereo is out of range for a 16 kHz mono model; --bitrate asks for one.
LOSSY = {"ogg": ("libvorbis", "ogg", ["-q:a", "8"]),      # ~256 kbit/s at 44.1 kHz stereo
         "mp3": ("libmp3lame", "mp3", ["-q:a", "0"]),     # LAME V0, ~245 kbit/s
         "m4a": ("aac", "ipod", ["-b:a", "256k"])}        # ffmpeg's AAC encoder has no stable VBR mode
# Rates the lossy formats can hold (Vorbis: any).
RATES = {"mp3": (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000),
         "m4a": (7350, 8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)}
CLIP_MODES = ("clamp", "none")
FIELDS = ("track", "stem", "ext")
DEFAULT_FILENAME = "{track}/{stem}.{ext}"


def _option(default, help_text, choices=None):
  return dataclasses.field(default=default, metadata=dict(help=help_text, choices=choices))


@dataclasses.dataclass(frozen=True)
class OutputOptions:
  """The files one input is separated into. Invalid values raise `ValueError` naming the flag."""

  stems: Optional[Tuple[str, ...]] = _option(
      None, "Write only these stems: sources of the model, or no_<source> for the sum of the others (default: "
      "every source).")
  two_stems: Optional[str] = _option(
      None, "Write SOURCE and no_SOURCE (the sum of the other sources, so the two add up to the mixture "
      "estimate).")
  codec: str = _option("wav", "Output format.", choices=CODECS)
  bit_depth: Optional[int] = _option(
      None, "Bits per sample of wav (16, 24, 32 = float; default 32) and flac (16, 24; default 16). Lossy codecs "
      "have none.")
  bitrate: Optional[str] = _option(
      None, "Bitrate of ogg, mp3 and m4a, e.g. 192k (default: high-quality VBR for ogg and mp3, 256k for m4a).")
  clip: Optional[str] = _option(
      None, "Samples beyond full scale: clamp them, or keep them (none; float wav and the lossy codecs only). "
      "Default: float wav keeps them, the other formats clamp.", choices=CLIP_MODES)
  filename: str = _option(DEFAULT_FILENAME, "Output path under --output_dir; fields {track} (the input's name, "
                          "or its path below an input folder), {stem} and {ext}.")
  skip_existing: bool = _option(False, "Skip inputs whose output files all exist.")

  def __post_init__(self):
    if isinstance(self.stems, str):
      object.__setattr__(self, "stems", tuple(s.strip() for s in self.stems.split(",") if s.strip()))
    elif self.stems is not None:
      object.__setattr__(self, "stems", tuple(self.stems))
    if self.codec not in CODECS:
      raise ValueError(f"--codec={self.codec}: choose one of {', '.join(CODECS)}")
    if self.bit_depth is not None:
      object.__setattr__(self, "bit_depth", _integer("bit_depth", self.bit_depth))
      if self.codec in BIT_DEPTHS and self.bit_depth not in BIT_DEPTHS[self.codec]:
        raise ValueError(f"--bit_depth={self.bit_depth}: {self.codec} holds "
                         f"{', '.join(map(str, sorted(BIT_DEPTHS[self.codec])))} bits")
      if self.codec not in BIT_DEPTHS and self.bit_depth not in (16, 24, 32):
        raise ValueError(f"--bit_depth={self.bit_depth}: choose 16, 24 or 32")
    if self.bitrate is not None and not _is_bitrate(self.bitrate):
      raise ValueError(f"--bitrate={self.bitrate}: give bits per second, e.g. 192k or 192000")
    if self.clip is not None and self.clip not in CLIP_MODES:
      raise ValueError(f"--clip={self.clip}: choose one of {', '.join(CLIP_MODES)}")
    if self.clip == "none" and self.subtype not in (None, "FLOAT"):
      raise ValueError(f"--clip=none: {self.bit_depth_or_default}-bit {self.codec} cannot hold samples beyond full "
                       f"scale; use --codec wav --bit_depth 32, a lossy codec, or --clip clamp")
    if self.stems and self.two_stems:
      raise ValueError(f"--two_stems={self.two_stems}: give it or --stems, not both")
    _check_template(self.filename)

  @property
  def bit_depth_or_default(self) -> Optional[int]:
    return (self.bit_depth or BIT_DEPTHS[self.codec][0]) if self.codec in BIT_DEPTHS else None

  @property
  def subtype(self) -> Optional[str]:
    """libsndfile's sample format for the lossless codecs; None for the lossy ones."""
    return SUBTYPES[self.codec, self.bit_depth_or_default] if self.codec in LOSSLESS else None

  @property
  def clamps(self) -> bool:
    return self.clip == "clamp" if self.clip else self.subtype != "FLOAT"

  def stem_sources(self, source_names: Sequence[str]) -> Dict[str, Tuple[str, ...]]:
    """``{stem: the sources it sums}``, in the order asked for."""
    flag, names = ("two_stems", (self.two_stems, f"no_{self.two_stems}")) if self.two_stems else (
        "stems", self.stems or tuple(source_names))
    stems = {}
    for name in names:
      stems[name] = sources_of_stem(name, source_names)
      if stems[name] is None:
        value = self.two_stems if self.two_stems else name
        raise ValueError(f"--{flag}={value}: not a source of this model ({', '.join(source_names)}"
                         f"{'' if self.two_stems else '; or no_<source>, the sum of the others'})")
    if len(stems) > 1 and "{stem}" not in self.filename:
      raise ValueError(f"--filename={self.filename}: needs {{stem}} to tell the {len(stems)} stems apart")
    return stems

  def paths(self, output_dir: str, track: str, stems: Sequence[str]) -> Dict[str, str]:
    """``{stem: output path}`` for the input named ``track``."""
    return {stem: os.path.normpath(os.path.join(output_dir, self.filename.format(track=track, stem=stem,
                                                                                   ext=self.codec)))
            for stem in stems}

  def check_rate(self, sample_rate: int, name: str):
    """Raises `ValueError` when the codec cannot hold ``sample_rate``."""
    if self.codec in RATES and sample_rate not in RATES[self.codec]:
      raise ValueError(f"{name}: --codec={self.codec} cannot hold its rate of {sample_rate} Hz (it holds "
                       f"{', '.join(map(str, RATES[self.codec]))}); choose wav, flac or ogg")


def sources_of_stem(name: str, source_names: Sequence[str]) -> Optional[Tuple[str, ...]]:
  """The sources a stem sums: a source itself, or for ``no_<source>`` all the others; None for neither."""
  if name in source_names:
    return (name,)
  if name.startswith("no_") and name[3:] in source_names:
    return tuple(s for s in source_names if s != name[3:])
  return None


def stem_samples(estimates: Dict[str, np.ndarray], sources: Sequence[str]) -> np.ndarray:
  """A stem's samples: the estimates of its ``sources`` added up (float32)."""
  total = np.array(estimates[sources[0]], np.float32)
  for source in sources[1:]:
    total += estimates[source]
  return total


def _integer(name, value):
  try:
    return int(value)
  except (TypeError, ValueError):
    raise ValueError(f"--{name}={value}: not a number") from None


def _is_bitrate(value):
  value = str(value).strip().lower()
  number = value[:-1] if value.endswith(("k", "m")) else value
  try:
    return float(number) > 0
  except ValueError:
    return False


def _check_template(template):
  try:
    fields = [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]
  except ValueError as e:
    raise ValueError(f"--filename={template}: {e}") from None
  unknown = [f for f in fields if f not in FIELDS]
  if unknown:
    raise ValueError(f"--filename={template}: unknown field {{{unknown[0]}}}; use {{track}}, {{stem}} and {{ext}}")
  if not template.strip() or os.path.isabs(template) or ".." in template.split("/"):
    raise ValueError(f"--filename={template}: give a relative path inside --output_dir")


def define_flags():
  """One absl flag per option, with its default, help text and allowed values."""
  from absl import flags
  for field in dataclasses.fields(OutputOptions):
    meta, kind = field.metadata, typing.get_args(field.type)[0] if typing.get_origin(field.type) is typing.Union \
        else field.type
    if meta["choices"]:
      flags.DEFINE_enum(field.name, field.default, meta["choices"], meta["help"])
    elif kind is bool:
      flags.DEFINE_boolean(field.name, field.default, meta["help"])
    elif field.name == "stems":
      flags.DEFINE_list(field.name, field.default, meta["help"])
    elif field.name == "bit_depth":
      flags.DEFINE_enum(field.name, None, ["16", "24", "32"], meta["help"])
    else:
      flags.DEFINE_string(field.name, field.default, meta["help"])


def from_flags(values) -> OutputOptions:
  return OutputOptions(**{f.name: values[f.name].value for f in dataclasses.fields(OutputOptions)})


class StemFile:
  """One stem written block by block at ``path`` (a temporary name that `atomic_output` renames to ``name``,
  which errors name)."""

  def __init__(self, path: str, sample_rate: int, channels: int, options: OutputOptions, name: str = None):
    self.path, self.sample_rate, self.channels, self.options = path, sample_rate, channels, options
    self.name = name or path
    if options.codec in LOSSLESS:
      self._file = soundfile.SoundFile(path, "w", sample_rate, channels, format=LOSSLESS[options.codec],
                                       subtype=options.subtype)
    else:
      self._file = _FfmpegEncoder(path, sample_rate, channels, options, self.name)

  def write(self, block: np.ndarray):
    block = np.clip(block, -1.0, 1.0) if self.options.clamps else block
    self._file.write(np.ascontiguousarray(block, np.float32))

  def close(self):
    self._file.close()

  def rewrite_silence(self, frames: int, block_frames: int = 65536):
    """Starts over with ``frames`` samples of silence (a silent input separates to silence)."""
    self._file.close()
    self.__init__(self.path, self.sample_rate, self.channels, self.options, self.name)
    for start in range(0, frames, block_frames):
      self.write(np.zeros((min(block_frames, frames - start), self.channels), np.float32))


class _FfmpegEncoder:
  """ffmpeg encoding float32 samples from a pipe into ``path``; its errors name the path."""

  def __init__(self, path, sample_rate, channels, options, name):
    if shutil.which("ffmpeg") is None:
      raise OSError(f"{name}: --codec={options.codec} needs ffmpeg (install it: apt-get install -y ffmpeg)")
    encoder, muxer, quality = LOSSY[options.codec]
    if options.bitrate:
      quality = ["-b:a", str(options.bitrate)]
    self.name = name
    self._log = tempfile.TemporaryFile()
    self._process = subprocess.Popen(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "f32le", "-ar", str(sample_rate), "-ac", str(channels),
         "-i", "pipe:0", "-c:a", encoder, *quality, "-f", muxer, path],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._log)

  def write(self, block):
    try:
      self._process.stdin.write(block.tobytes())
    except BrokenPipeError:
      self.close()

  def close(self):
    if self._process.stdin.closed:
      return
    try:
      self._process.stdin.close()
    except BrokenPipeError:
      pass
    if self._process.wait():
      self._log.seek(0)
      lines = self._log.read().decode(errors="replace").strip().splitlines()
      raise OSError(f"{self.name}: ffmpeg could not encode it ({lines[-1] if lines else 'no reason given'})")
