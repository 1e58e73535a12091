"""MUSDB18 / MUSDB18-HQ tracks through musdb, with the checks musdb leaves out."""

from typing import Optional, Sequence

SUBSETS = ("train", "test")
SPLITS = ("train", "valid")


def open_tracks(musdb_root: str, subset: str = "test", split: Optional[str] = None, is_wav: Optional[bool] = None,
                track_names: Optional[Sequence[str]] = None, split_mode: str = "official"):
  """``(musdb tracks, is_wav)`` of ``subset`` (and ``split``, only for ``train``) under ``musdb_root``, found, with the
  layout detected and the split made exactly as training does (`wave_unet_tf.data.tracks.find_track_names`);
  musdb only reads them (and museval scores them).

  Raises:
    ValueError: an unknown subset or split, no tracks at all (musdb silently returns none for a wrong root or
      layout), or ``track_names`` that are not there.
  """
  import musdb

  from wave_unet_tf.data.tracks import find_track_names
  if subset not in SUBSETS:
    raise ValueError(f"subset {subset!r}: must be one of {', '.join(SUBSETS)}")
  names, is_wav = find_track_names(musdb_root, subset, split, is_wav, split_mode)
  if track_names:
    missing = set(track_names) - set(names)
    if missing:
      raise ValueError(f"{musdb_root}: no track(s) {', '.join(sorted(missing))} in subset {subset}"
                       f"{f' split {split!r}' if split else ''}")
    names = [n for n in names if n in set(track_names)]
  wanted = set(names)
  tracks = [t for t in musdb.DB(root=musdb_root, is_wav=is_wav, subsets=subset).tracks if t.name in wanted]
  if not tracks:
    raise ValueError(f"{musdb_root}: musdb reads none of the {len(names)} track(s) found in subset {subset!r}")
  return tracks, is_wav


def check_sources(track, source_names):
  """Raises ValueError unless every model source is a target of ``track`` (musdb defines vocals, drums,
  bass, other and accompaniment = bass + drums + other)."""
  missing = [s for s in source_names if s not in track.targets]
  if missing:
    raise ValueError(f"model sources {', '.join(missing)} are not MUSDB targets "
                     f"({', '.join(track.targets)}); cannot score them")


def check_files(track):
  """Raises `wave_unet_tf.audio.AudioError` naming the file unless the mixture and every source file of a
  MUSDB18-HQ ``track`` passes the header checks training makes (`wave_unet_tf.audio.open_soundfile`): musdb
  and museval would otherwise read a damaged file as far as it goes, or fail with a traceback. ``.stem.mp4``
  files are checked by decoding them."""
  from wave_unet_tf import audio
  if not track.path.endswith(".wav"):
    return
  for path in [track.path] + [source.path for source in track.sources.values()]:
    f = audio.open_soundfile(path)
    if f is None:
      raise audio.AudioError(f"{path}: unreadable audio (libsndfile cannot read it)")
    f.close()
