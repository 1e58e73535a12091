"""Finding tracks: MUSDB18 (``.stem.mp4``), MUSDB18-HQ and any folder in MUSDB18-HQ layout, and their splits.

A `Track` says where each of the config's sources comes from; nothing is decoded here (see `cache`).
The layouts, under ``<root>/<subset>/`` with subset ``train`` or ``test``:

- MUSDB18: ``<track>.stem.mp4``, five streams (mixture, drums, bass, other, vocals; musdb's ``stem_ids``).
- MUSDB18-HQ or your own data: ``<track>/<stem>.wav`` (or ``.flac``), one file per stem. The config's source
  names pick the stems; ``accompaniment``, when there is no such file, is the sum of every stem but
  ``vocals`` and ``mixture`` (the voice task of the paper).
"""

import dataclasses
import importlib.util
import os
import shutil
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import soundfile

from wave_unet_tf import audio, runtime

from wave_unet_tf.config import Config

MIXTURE = "mixture"
VOCALS = "vocals"
ACCOMPANIMENT = "accompaniment"
STEM_SUFFIX = ".stem.mp4"
STEM_FILE_EXTENSIONS = (".wav", ".flac")
SPLIT_MODES = ("official", "random")
# The original Wave-U-Net's random validation split: 25 of MUSDB18's 100 training songs, seed 1337.
RANDOM_SPLIT_SEED = 1337
RANDOM_SPLIT_VALID_FRACTION = 0.25

FFMPEG_HINT = "apt-get install -y ffmpeg (or conda install -c conda-forge ffmpeg)"
TOY_DATA_HINT = ("to make a small synthetic dataset in that layout run: "
                 "wave-unet-toy-data --output_dir DIR --num_tracks 8 --seconds 10")


class DatasetError(ValueError):
  """A dataset root, track or stem file that cannot be used; the message names it."""


@dataclasses.dataclass(frozen=True)
class StemFile:
  """One decodable stem: a whole audio file, or one stream of a ``.stem.mp4`` (``stream`` set)."""

  path: str
  stream: Optional[int] = None


@dataclasses.dataclass(frozen=True)
class Track:
  """One song and where each of the config's sources comes from.

  Attributes:
    name: Track name (folder or file name without extension), unique within a subset.
    subset: ``train`` or ``test``.
    path: The ``.stem.mp4`` file or the track folder; for messages.
    sources: ``(source name, stem files summed to make it)`` in the config's source order.
  """

  name: str
  subset: str
  path: str
  sources: Tuple[Tuple[str, Tuple[StemFile, ...]], ...]

  @property
  def source_names(self) -> Tuple[str, ...]:
    return tuple(name for name, _ in self.sources)

  @property
  def stem_files(self) -> Tuple[StemFile, ...]:
    """Every stem file the track reads, each once, in a fixed order."""
    seen = {}
    for _, stems in self.sources:
      for stem in stems:
        seen.setdefault(stem, None)
    return tuple(seen)


def find_tracks(musdb_root: str, config: Config, subset: str = "train", split: Optional[str] = None,
                is_wav: Optional[bool] = None, split_mode: str = "official", strict: bool = False) -> List[Track]:
  """The tracks of ``<musdb_root>/<subset>`` whose stems give the config's sources, sorted by name.

  Args:
    musdb_root: MUSDB18 (``.stem.mp4``), MUSDB18-HQ, or any folder in MUSDB18-HQ layout.
    config: Its ``source_names`` pick the stems.
    subset: ``train`` or ``test``.
    split: ``train`` or ``valid`` part of the ``train`` subset; None: the whole subset.
    is_wav: Folders of WAV/FLAC stems (True) or ``.stem.mp4`` files (False); None detects it.
    split_mode: ``official``: musdb's validation list (MUSDB18's 14 validation songs). When none of the
      subset's tracks is on that list (a dataset of other songs), this falls back to the ``random`` split and
      logs so. ``random``: the original Wave-U-Net's seeded 75/25 split (seed 1337).
    strict: Raise on an unreadable stem file, or a track folder without a stem for one of the sources,
      instead of skipping the track with a warning.

  Returns:
    `Track` list; empty only for a ``valid`` split of a one-track subset.

  Raises:
    DatasetError: no tracks under the root (the message names the root and the expected layout), a split
      that does not apply, stems of unequal length or sample rate, sources that no stem provides, or (with
      ``strict``) an unreadable stem file.
  """
  names, is_wav = find_track_names(musdb_root, subset, split, is_wav, split_mode, config.source_names)
  subset_dir = os.path.join(os.fspath(musdb_root), subset)
  build = _folder_track if is_wav else _stem_mp4_track
  tracks, missing = [], []
  for name in names:
    try:
      tracks.append(build(subset_dir, name, subset, config))
    except _UnreadableStem as e:
      if strict:
        raise DatasetError(str(e)) from None
      runtime.notice(f"skipping track {name!r}: {e}")
    except _MissingSource as e:
      if strict:
        raise DatasetError(f"{e} (--strict_data)") from None
      missing.append((name, e))
  if missing and not tracks and split != "valid":  # the dataset's stems are not the config's sources at all
    raise DatasetError(str(missing[0][1])) from None
  for name, e in missing:  # a few tracks lack one of the stems: train on the others
    runtime.notice(f"skipping track {name!r}: {e}")
  return tracks


def find_track_names(musdb_root: str, subset: str = "train", split: Optional[str] = None,
                     is_wav: Optional[bool] = None, split_mode: str = "official",
                     source_names: Sequence[str] = ("vocals", "drums", "bass", "other")) -> Tuple[List[str], bool]:
  """``(track names, is_wav)`` of ``<musdb_root>/<subset>`` (and ``split``), the layout detected when
  ``is_wav`` is None: how training and evaluation both find tracks (see `find_tracks` for the arguments;
  ``source_names`` only shape the error message)."""
  if split not in (None, "train", "valid"):
    raise DatasetError(f"split={split!r}: must be 'train', 'valid' or None")
  if split_mode not in SPLIT_MODES:
    raise DatasetError(f"split_mode={split_mode!r}: must be one of {', '.join(SPLIT_MODES)}")
  if split is not None and subset != "train":
    raise DatasetError(f"split={split!r} applies to the 'train' subset only, not {subset!r}")
  root = os.fspath(musdb_root)
  if not os.path.isdir(root):
    raise DatasetError(f"--musdb_root={root}: no such folder. {_layout_help(root, subset, source_names)}")
  subset_dir = os.path.join(root, subset)
  if is_wav is None:
    is_wav = not _stem_mp4_names(subset_dir)
  if not is_wav:
    require_ffmpeg(f"reading the .stem.mp4 files in {subset_dir}")
  names = _wav_track_names(subset_dir) if is_wav else _stem_mp4_names(subset_dir)
  if not names:
    raise DatasetError(f"--musdb_root={root}: no tracks in {subset_dir}. {_layout_help(root, subset, source_names)}")
  if split is not None:
    names = _split_names(names, split, split_mode, root)
  return names, is_wav


class _UnreadableStem(Exception):
  pass


class _MissingSource(DatasetError):
  """A track folder without a stem for one of the config's sources."""


def _layout_help(root, subset, source_names):
  stems = ", ".join(f"{s}.wav" for s in source_names)
  return (f"Expected MUSDB18 ({root}/{subset}/<track>.stem.mp4), MUSDB18-HQ "
          f"({root}/{subset}/<track>/mixture.wav, vocals.wav, drums.wav, bass.wav, other.wav) or folders of "
          f"stems named after the config's sources ({root}/{subset}/<track>/{stems}); {TOY_DATA_HINT}")


def _stem_mp4_names(subset_dir):
  if not os.path.isdir(subset_dir):
    return []
  return sorted(f[:-len(STEM_SUFFIX)] for f in os.listdir(subset_dir) if f.endswith(STEM_SUFFIX))


def _wav_track_names(subset_dir):
  if not os.path.isdir(subset_dir):
    return []
  return sorted(entry.name for entry in os.scandir(subset_dir)
                if entry.is_dir() and not entry.name.startswith(".") and _stem_files_in(entry.path))


def _stem_files_in(folder) -> Dict[str, str]:
  """``{stem name: path}`` of the audio files in a track folder."""
  stems = {}
  for f in sorted(os.listdir(folder)):
    stem, ext = os.path.splitext(f)
    if ext.lower() in STEM_FILE_EXTENSIONS and not f.startswith("."):
      stems.setdefault(stem, os.path.join(folder, f))
  return stems


def require_ffmpeg(purpose: str):
  """One-line `DatasetError` unless ffmpeg and ffprobe are on PATH (stempeg, and so musdb, need both)."""
  missing = [tool for tool in ("ffmpeg", "ffprobe") if shutil.which(tool) is None]
  if missing:
    raise DatasetError(f"{purpose} needs {' and '.join(missing)}, not found on PATH; install: {FFMPEG_HINT}")


def musdb_setup() -> dict:
  """musdb's dataset description (stem ids, the official validation track names)."""
  if shutil.which("ffmpeg") and shutil.which("ffprobe"):
    import musdb
    # An empty subset list reads only the setup, without probing any file.
    return musdb.DB(root=".", subsets=[]).setup
  # musdb cannot be imported without ffmpeg (stempeg refuses); WAV datasets need only its track lists.
  import yaml
  spec = importlib.util.find_spec("musdb")
  with open(os.path.join(spec.submodule_search_locations[0], "configs", "mus.yaml")) as f:
    return yaml.safe_load(f)


def _split_names(names: Sequence[str], split: str, split_mode: str, root: str) -> List[str]:
  if split_mode == "official":
    valid = set(musdb_setup()["validation_tracks"]) & set(names)
    if not valid and len(names) > 1:
      # Once per process (notice): the train and valid lookups would say it twice.
      runtime.notice(f"{root}: none of its {len(names)} training tracks is in musdb's official validation list "
                     f"(other songs than MUSDB18's); using a random {round(100 * (1 - RANDOM_SPLIT_VALID_FRACTION))}/"
                     f"{round(100 * RANDOM_SPLIT_VALID_FRACTION)} split with seed {RANDOM_SPLIT_SEED} instead")
      valid = random_validation_names(names)
  else:
    valid = random_validation_names(names)
  return [n for n in names if (n in valid) == (split == "valid")]


def random_validation_names(names: Sequence[str]) -> set:
  """The original's split: ``round(25%)`` of the tracks (at least one of two or more), seed 1337."""
  names = sorted(names)
  if len(names) < 2:
    return set()
  count = min(len(names) - 1, max(1, int(round(len(names) * RANDOM_SPLIT_VALID_FRACTION))))
  chosen = np.random.RandomState(RANDOM_SPLIT_SEED).choice(len(names), size=count, replace=False)
  return {names[i] for i in chosen}


def _stem_mp4_track(subset_dir, name, subset, config):
  path = os.path.join(subset_dir, name + STEM_SUFFIX)
  stem_ids = musdb_setup()["stem_ids"]
  available = {stem: StemFile(path, stream) for stem, stream in stem_ids.items()}
  return Track(name, subset, path, _assign_sources(available, config, path))


def _folder_track(subset_dir, name, subset, config):
  folder = os.path.join(subset_dir, name)
  files = _stem_files_in(folder)
  sources = _assign_sources({stem: StemFile(p) for stem, p in files.items()}, config, folder)
  track = Track(name, subset, folder, sources)
  _check_stem_files(track)
  return track


def _assign_sources(available: Dict[str, StemFile], config: Config, where: str):
  sources = []
  for source in config.source_names:
    if source in available:
      stems = (available[source],)
    elif source == ACCOMPANIMENT:
      others = set(config.source_names) | {MIXTURE, VOCALS}
      stems = tuple(f for stem, f in sorted(available.items()) if stem not in others)
    else:
      stems = ()
    if not stems:
      found = ", ".join(sorted(available)) or "none"
      raise _MissingSource(f"{where}: no stem for source {source!r} of the config (stems found: {found})")
    sources.append((source, stems))
  return tuple(sources)


def _check_stem_files(track: Track):
  """Header check of WAV/FLAC stems (cheap; no decoding): readable, not empty, truncated or damaged, a usable
  rate and channel count (`audio.open_soundfile`), then one rate and one length across the stems."""
  shapes = {}
  for stem in track.stem_files:
    try:
      f = audio.open_soundfile(stem.path)
    except (audio.AudioError, OSError) as e:
      raise _UnreadableStem(" ".join(str(e).split())) from None
    if f is None:
      try:
        soundfile.info(stem.path)
        reason = "libsndfile cannot read it"
      except Exception as e:
        reason = " ".join(str(e).split())
      raise _UnreadableStem(f"{stem.path}: unreadable audio ({reason})") from None
    with f:
      shapes[os.path.basename(stem.path)] = (f.samplerate, f.frames)
  check_stems_agree(track, shapes)


def check_stems_agree(track: Track, shapes: Dict[str, Tuple[int, int]]):
  """Raises `DatasetError` naming the track unless all ``{stem: (rate, frames)}`` agree."""
  for what, index in (("sample rate", 0), ("length", 1)):
    values = {shape[index] for shape in shapes.values()}
    if len(values) > 1:
      detail = ", ".join(f"{stem}: {shape[index]}" for stem, shape in sorted(shapes.items()))
      unit = " Hz" if index == 0 else " samples"
      raise DatasetError(f"track {track.name!r} ({track.path}): stems of unequal {what} ({detail}{unit})")
