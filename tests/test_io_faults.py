"""Faults around files, on real processes: hostile audio files, a full disk, and kills at any moment.

Every failure must be one line naming the file, a non-zero exit, no traceback, bounded memory, and nothing
partial left under a final name; after a full disk or a kill the same command must finish the job.
"""

import contextlib
import json
import os
import pathlib
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import soundfile

import wave_unet_tf as wut
from conftest import fill_disk, small_disk
from hostile_audio import HOSTILE_NAMES, write_hostile_files

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]
LOAD_MEMORY_LIMIT = 1 << 30  # address space for reading files without TensorFlow: far below what a lie declares
# TensorFlow reserves address space per thread; the bound stays far below the 2 GB a lying header declares.
COMMAND_MEMORY_LIMIT = (3 << 30) + (32 << 20) * (os.cpu_count() or 1)


def _env():
  env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as a user runs it
  env["PYTHONPATH"] = str(PROJECT_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
  return env


def _limit_memory(limit):
  return lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def run_command(name, *args, memory_limit=None, timeout=300):
  return subprocess.run([sys.executable, "-m", f"wave_unet_tf.{name}", *map(str, args)], cwd=PROJECT_ROOT,
                        capture_output=True, text=True, env=_env(), timeout=timeout,
                        preexec_fn=_limit_memory(memory_limit) if memory_limit else None)


def assert_one_line_error(result, *names):
  """Exit status 1, stderr one ``<command>: error: ...`` line naming each of ``names``, no traceback."""
  assert result.returncode == 1, (result.returncode, result.stderr)
  # Progress bars redraw with carriage returns and clear themselves: what stays is the other lines.
  lines = [line for line in result.stderr.replace("\r", "\n").splitlines() if line.strip() and "|" not in line]
  assert "Traceback" not in result.stderr, result.stderr
  assert len(lines) == 1 and ": error: " in lines[0], result.stderr
  for name in names:
    assert str(name) in lines[0], lines[0]
  return lines[0]


def no_temporary_files(folder):
  return not [p for p in pathlib.Path(folder).rglob(".tmp-*")]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
  return write_hostile_files(str(tmp_path_factory.mktemp("hostile")))


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
  from wave_unet_tf.model.saving import save_model
  config = wut.get_preset("M4").replace(num_layers=3, num_initial_filters=4, num_frames=1024)
  return save_model(wut.build_model(config), str(tmp_path_factory.mktemp("model") / "tiny.keras"))


def song(seconds, rate=44100, channels=2, seed=0):
  return np.random.default_rng(seed).uniform(-0.4, 0.4, (int(seconds * rate), channels)).astype(np.float32)


# -- hostile audio files ---------------------------------------------------------------------------------------

_READERS = r"""
import sys
from wave_unet_tf import audio
from wave_unet_tf.separation.pipeline import AudioSource

def source_blocks(path):
  source = AudioSource(path)
  try:
    return sum(len(b) for b in source.blocks())
  finally:
    source.close()

for reader in (audio.load, audio.info, source_blocks):
  try:
    reader(sys.argv[1])
  except audio.AudioError as e:
    print(e)
  else:
    print(f"{reader.__name__} accepted it")
"""


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_reading_functions_refuse_a_hostile_file_naming_it_in_bounded_memory(hostile, name):
  result = subprocess.run([sys.executable, "-c", _READERS, hostile[name]], capture_output=True, text=True,
                          env=_env(), timeout=60, preexec_fn=_limit_memory(LOAD_MEMORY_LIMIT))
  assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
  messages = result.stdout.splitlines()
  assert len(messages) == 3, result.stdout
  for message in messages:
    assert message.startswith(hostile[name] + ": ") and "accepted" not in message, message


def test_a_valid_file_is_still_read_whole(tmp_path):
  from wave_unet_tf import audio
  from wave_unet_tf.separation.pipeline import AudioSource
  for codec in ("WAV", "FLAC"):
    path = str(tmp_path / f"ok.{codec.lower()}")
    soundfile.write(path, song(2.0), 44100, format=codec)
    waveform, rate = audio.load(path)
    assert waveform.shape == (88200, 2) and rate == 44100
    assert audio.info(path) == (44100, 2, 88200)
    source = AudioSource(path)
    assert sum(len(b) for b in source.blocks()) == 88200
    source.close()


def test_a_wav_stream_of_unknown_length_is_read_as_far_as_it_goes(tmp_path):
  """Writers to pipes (ffmpeg) leave the sizes 0xFFFFFFFF; that is not a truncated file."""
  from wave_unet_tf import audio
  for size in (0xFFFFFFFF,):
    data = np.round(song(0.5) * 32767).astype("<i2").tobytes()
    fmt = (1).to_bytes(2, "little") + (2).to_bytes(2, "little") + (44100).to_bytes(4, "little") + \
        (44100 * 4).to_bytes(4, "little") + (4).to_bytes(2, "little") + (16).to_bytes(2, "little")
    wav = (b"RIFF" + size.to_bytes(4, "little") + b"WAVE" + b"fmt " + (16).to_bytes(4, "little") + fmt + b"data"
           + size.to_bytes(4, "little") + data)
    path = tmp_path / f"stream_{size}.wav"
    path.write_bytes(wav)
    waveform, _ = audio.load(str(path))
    assert waveform.shape == (22050, 2)


def test_separate_reports_every_hostile_file_and_separates_the_good_one(hostile, model_path, tmp_path):
  good = str(tmp_path / "good.wav")
  soundfile.write(good, song(0.5), 44100)
  out = tmp_path / "out"
  result = run_command("separate", "--model", model_path, "--output_dir", out, "--noprogress",
                       *hostile.values(), good, memory_limit=COMMAND_MEMORY_LIMIT)
  assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
  errors = [line for line in result.stderr.splitlines() if line.strip()]
  for name, path in hostile.items():
    assert [line for line in errors if f": error: {path}: " in line], (name, result.stderr)
  assert len(errors) == len(hostile) + 1  # one line each, and the count
  assert sorted(p.name for p in out.iterdir()) == ["good"]
  assert sorted(p.name for p in (out / "good").iterdir()) == ["accompaniment.wav", "vocals.wav"]
  assert no_temporary_files(out)


def test_hostile_bytes_on_stdin_are_one_line_and_leave_no_output(hostile, model_path, tmp_path):
  out = tmp_path / "out"
  with open(hostile["random_bytes.wav"], "rb") as stdin:
    result = subprocess.run([sys.executable, "-m", "wave_unet_tf.separate", "--model", model_path, "--output_dir",
                             str(out), "--noprogress", "-"], stdin=stdin, capture_output=True, text=True,
                            env=_env(), cwd=PROJECT_ROOT, timeout=300)
  assert "unreadable audio" in assert_one_line_error(result, "-: ")
  assert not list(out.iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("name", HOSTILE_NAMES[::4])  # all of them go through the command together above
def test_separate_command_on_a_hostile_file_is_one_line_naming_it(hostile, model_path, tmp_path, name):
  out = tmp_path / "out"
  result = run_command("separate", "--model", model_path, "--output_dir", out, hostile[name],
                       memory_limit=COMMAND_MEMORY_LIMIT)
  assert_one_line_error(result, hostile[name])
  assert not list(out.iterdir())


# -- datasets: training and evaluation skip a damaged track, or stop with --strict_data ---------------------

TINY_TRAIN = ["--preset=M5", "--num_layers=3", "--num_initial_filters=4", "--sample_rate=8000", "--num_channels=1",
              "--num_frames=256", "--batch_size=2", "--steps_per_epoch=2", "--max_epochs=1", "--nofine_tune",
              "--max_validation_batches=1", "--checkpoint_every=2", "--summary_every=1", "--max_steps=2",
              "--split_mode=random"]


def dataset_with_hostile_stem(toy_root, folder, hostile_path, stem="bass"):
  """A copy of the toy dataset whose first training track has ``hostile_path`` as its ``stem`` file (named
  .wav or .flac, the extensions a MUSDB18-HQ folder holds)."""
  shutil.copytree(toy_root, folder)
  track = sorted((folder / "train").iterdir())[0]
  (track / f"{stem}.wav").unlink()
  ext = os.path.splitext(hostile_path)[1] if hostile_path.endswith((".wav", ".flac")) else ".wav"
  shutil.copyfile(hostile_path, track / f"{stem}{ext}")
  return track, track / f"{stem}{ext}"


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_training_tracks_skip_a_hostile_stem_naming_it_or_stop_when_strict(toy_root, hostile, tmp_path, capsys,
                                                                            name):
  from wave_unet_tf.data.tracks import DatasetError, find_tracks
  config = wut.get_preset("M5")
  track, bad = dataset_with_hostile_stem(toy_root, tmp_path / "data", hostile[name])
  tracks = find_tracks(tmp_path / "data", config)
  assert track.name not in [t.name for t in tracks] and len(tracks) == 3
  warnings = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
  assert len(warnings) == 1 and str(bad) in warnings[0] and "skipping track" in warnings[0], warnings
  with pytest.raises(DatasetError, match=re_escape(str(bad))):
    find_tracks(tmp_path / "data", config, strict=True)


def re_escape(text):
  import re
  return re.escape(text)


def test_a_stem_damaged_past_its_header_is_skipped_when_decoded_or_stops_when_strict(toy_root, tmp_path, capsys):
  """A FLAC whose header is intact but whose audio is garbage half-way passes the header check; decoding it
  for the cache finds it."""
  from wave_unet_tf.data import cache
  from wave_unet_tf.data.tracks import DatasetError, find_tracks
  config = wut.get_preset("M5").replace(sample_rate=8000, num_channels=1)
  shutil.copytree(toy_root, tmp_path / "data")
  track = sorted((tmp_path / "data" / "train").iterdir())[0]
  waveform, rate = soundfile.read(str(track / "bass.wav"), dtype="float32")
  (track / "bass.wav").unlink()
  soundfile.write(str(track / "bass.flac"), waveform, rate)
  flac = bytearray((track / "bass.flac").read_bytes())
  middle = len(flac) // 2
  flac[middle:middle + 4000] = np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes()
  (track / "bass.flac").write_bytes(bytes(flac))
  tracks = find_tracks(tmp_path / "data", config)
  assert len(tracks) == 4  # the header is fine
  cached = cache.cache_tracks(config, tracks, tmp_path / "cache", progress=False)
  assert track.name not in [c.name for c in cached] and len(cached) == 3
  err = capsys.readouterr().err
  assert str(track / "bass.flac") in err and "skipping track" in err
  with pytest.raises(DatasetError, match=re_escape(str(track / "bass.flac"))):
    cache.cache_tracks(config, tracks, tmp_path / "cache", strict=True, progress=False)


@pytest.mark.slow
def test_train_command_skips_a_hostile_track_or_stops_with_strict_data(toy_root, hostile, tmp_path):
  _, bad = dataset_with_hostile_stem(toy_root, tmp_path / "data", hostile["truncated.flac"])
  common = [f"--musdb_root={tmp_path / 'data'}", f"--cache_dir={tmp_path / 'cache'}", *TINY_TRAIN]
  result = subprocess.run([sys.executable, str(PROJECT_ROOT / "train.py"), f"--model_dir={tmp_path / 'run'}",
                           *common], capture_output=True, text=True, env=_env(), cwd=PROJECT_ROOT, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  warnings = [line for line in result.stderr.splitlines() if "skipping track" in line]
  assert len(warnings) == 1 and str(bad) in warnings[0]
  result = subprocess.run([sys.executable, str(PROJECT_ROOT / "train.py"), f"--model_dir={tmp_path / 'strict'}",
                           "--strict_data", *common], capture_output=True, text=True, env=_env(), cwd=PROJECT_ROOT,
                          timeout=300)
  assert_one_line_error(result, bad)


def write_hq_dataset(root, names, seconds=1.0, rate=44100, subset="test", subtype="FLOAT"):
  """A tiny MUSDB18-HQ subset: <root>/<subset>/<track>/{mixture,bass,drums,other,vocals}.wav."""
  rng = np.random.default_rng(0)
  for name in names:
    folder = pathlib.Path(root) / subset / name
    folder.mkdir(parents=True)
    stems = {s: (0.1 * rng.standard_normal((int(seconds * rate), 2))).astype(np.float32)
             for s in ("bass", "drums", "other", "vocals")}
    for stem, waveform in stems.items():
      soundfile.write(str(folder / f"{stem}.wav"), waveform, rate, subtype=subtype)
    soundfile.write(str(folder / "mixture.wav"), sum(stems.values()), rate, subtype=subtype)
  return pathlib.Path(root)


@pytest.mark.slow
def test_evaluate_reports_and_skips_hostile_tracks_and_scores_the_others(hostile, model_path, tmp_path):
  root = write_hq_dataset(tmp_path / "musdb", ["Good", "Bad Mixture", "Bad Vocals"])
  shutil.copyfile(hostile["more_frames_than_data.wav"], root / "test" / "Bad Mixture" / "mixture.wav")
  shutil.copyfile(hostile["random_bytes.wav"], root / "test" / "Bad Vocals" / "vocals.wav")
  out = tmp_path / "eval"
  command = ["evaluate", "--model", model_path, "--musdb_root", root, "--is_wav", "--output_dir", out]
  for _ in range(2):  # the second run skips what is scored and reports the same damaged tracks
    result = run_command(*command)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.replace("\r", "\n").splitlines() if line.strip() and "|" not in line]
    assert any("skipping track 'Bad Mixture'" in l and str(root / "test" / "Bad Mixture" / "mixture.wav") in l
               for l in lines), lines
    assert any("skipping track 'Bad Vocals'" in l and str(root / "test" / "Bad Vocals" / "vocals.wav") in l
               for l in lines), lines
    assert ": error: 2 of 3 track(s) could not be scored" in lines[-1]
    assert sorted(p.name for p in (out / "test").iterdir()) == ["Good.json"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tracks"] == ["Good"] and sorted(summary["failed_tracks"]) == ["Bad Mixture", "Bad Vocals"]
  assert "skipping 1 already scored track(s)" in result.stdout


# -- a full disk: a real, small tmpfs as the output ------------------------------------------------------------

def files_under(folder, but=("filler",)):
  return sorted(str(p.relative_to(folder)) for p in pathlib.Path(folder).rglob("*") if p.name not in but)


def assert_disk_full_error(result, path):
  line = assert_one_line_error(result, path)
  assert "no space left" in line.lower(), line


@pytest.mark.slow
def test_export_to_a_full_disk_fails_naming_the_path_and_works_once_space_is_freed(model_path, tmp_path):
  with small_disk(tmp_path / "disk", 4096) as disk:
    filler = fill_disk(disk, leave_bytes=24 * 1024)
    args = ["--model", model_path, "--saved_model_dir", disk / "served", "--tflite", disk / "model.tflite"]
    assert_disk_full_error(run_command("export", *args), disk / "served")
    assert files_under(disk) == []  # no half SavedModel, no temporary folder
    filler.unlink()
    result = run_command("export", *args)
    assert result.returncode == 0, result.stderr
    assert (disk / "served" / "saved_model.pb").exists() and (disk / "model.tflite").stat().st_size > 0
    assert no_temporary_files(disk) and not [p for p in disk.iterdir() if p.name.startswith(".")]


def test_tflite_export_to_a_full_disk_leaves_nothing(model_path, tmp_path):
  with small_disk(tmp_path / "disk", 1024) as disk:
    fill_disk(disk, leave_bytes=16 * 1024)
    result = run_command("export", "--model", model_path, "--tflite", disk / "model.tflite")
    assert_disk_full_error(result, disk / "model.tflite")
    assert files_under(disk) == []


def test_separating_onto_a_full_disk_leaves_no_partial_stem_and_works_once_space_is_freed(model_path, tmp_path):
  song_path = tmp_path / "song.wav"
  soundfile.write(str(song_path), song(3.0), 44100)  # ~1 MB per float32 stem: the disk fills mid-write
  with small_disk(tmp_path / "disk", 4096) as disk:
    filler = fill_disk(disk, leave_bytes=600 * 1024)
    out = disk / "separated"
    result = run_command("separate", "--model", model_path, "--output_dir", out, "--noprogress", song_path)
    line = assert_one_line_error(result)
    assert "no space left" in line.lower() and str(out / "song") in line, line
    assert files_under(disk) == ["separated"]  # nothing under a final name, no temporary file
    filler.unlink()
    result = run_command("separate", "--model", model_path, "--output_dir", out, "--noprogress", song_path)
    assert result.returncode == 0, result.stderr
    for stem in ("accompaniment", "vocals"):
      assert soundfile.info(str(out / "song" / f"{stem}.wav")).frames == 3 * 44100
    assert no_temporary_files(disk)


@contextlib.contextmanager
def serving(folder):
  """An HTTP server on 127.0.0.1 serving ``folder``; yields its base URL."""
  import functools
  import http.server
  import threading

  class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
      pass

  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
  threading.Thread(target=server.serve_forever, daemon=True).start()
  try:
    yield f"http://127.0.0.1:{server.server_address[1]}"
  finally:
    server.shutdown()
    server.server_close()


def test_model_cache_on_a_full_disk_keeps_no_entry_and_downloads_once_space_is_freed(model_path, tmp_path):
  song_path = tmp_path / "song.wav"
  soundfile.write(str(song_path), song(0.5, rate=22050), 22050)
  with small_disk(tmp_path / "cache", 1024) as disk, serving(os.path.dirname(model_path)) as url:
    models = disk / "wave_unet_tf" / "models"
    models.mkdir(parents=True)
    filler = fill_disk(disk, leave_bytes=8 * 1024)
    env = {**_env(), "XDG_CACHE_HOME": str(disk)}  # the model cache's folder follows it
    command = [sys.executable, "-m", "wave_unet_tf.separate", "--model", f"{url}/{os.path.basename(model_path)}",
               "--nojit_compile", "--noprogress", "--output_dir", str(tmp_path / "out"), str(song_path)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=PROJECT_ROOT, timeout=300)
    errors = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert result.returncode == 1 and "Traceback" not in result.stderr and len(errors) == 1, result.stderr
    assert str(models) in errors[0] and "no space left" in errors[0].lower(), errors
    assert files_under(models) == []  # no entry, no temporary file
    filler.unlink()
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=PROJECT_ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    (entry,) = models.iterdir()
    assert entry.name.endswith(".keras") and entry.read_bytes() == pathlib.Path(model_path).read_bytes()


@pytest.mark.slow
def test_data_cache_on_a_full_disk_fails_naming_the_entry_and_is_built_once_space_is_freed(toy_root, tmp_path):
  with small_disk(tmp_path / "cache", 2048) as disk:
    filler = fill_disk(disk, leave_bytes=64 * 1024)
    command = [sys.executable, str(PROJECT_ROOT / "train.py"), f"--musdb_root={toy_root}",
               f"--model_dir={tmp_path / 'run'}", f"--cache_dir={disk}", *TINY_TRAIN]
    result = subprocess.run(command, capture_output=True, text=True, env=_env(), cwd=PROJECT_ROOT, timeout=300)
    errors = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert result.returncode == 1 and "Traceback" not in result.stderr and len(errors) == 1, result.stderr
    assert str(disk) in errors[0] and "no space left" in errors[0].lower(), errors
    assert no_temporary_files(disk)
    filler.unlink()
    result = subprocess.run(command, capture_output=True, text=True, env=_env(), cwd=PROJECT_ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len([p for p in disk.iterdir() if p.suffix == ".json"]) == 4


# -- killed at any moment: the same command finishes the job, nothing half-written is ever taken -------------

def run_killed(command, kill_at, env=None):
  """Starts ``command`` and SIGKILLs it as soon as ``kill_at(lines)`` holds, ``lines`` being what it has
  printed to stdout so far. Returns True when it was killed, False when it ended first.

  A kill lands at an observed event, never at a fraction of a measured duration: the same kills land on a
  fast, a slow or a loaded machine."""
  env = {**(env or _env()), "PYTHONUNBUFFERED": "1"}  # each line seen as it is printed
  process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
  lines = []
  reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
  reader.start()
  try:
    while process.poll() is None:
      if kill_at(lines):
        process.send_signal(signal.SIGKILL)
        process.wait()
        return True
      time.sleep(0.005)
    return False
  finally:
    if process.poll() is None:
      process.kill()
      process.wait()
    reader.join()


def kill_loop(command, kill_points, check, env=None):
  """Runs ``command`` once per kill point, each run SIGKILLed at its point (`run_killed`) and ``check()``ed
  after, then once more to its end. A point is an event with work still to come after it, so the run must be
  killed there; one marked `fleeting` (a state that may pass between two looks) is taken when seen."""
  for number, kill_at in enumerate(kill_points):
    killed = run_killed(command, kill_at, env)
    assert killed or getattr(kill_at, "fleeting", False), f"run {number} ended before its kill point"
    check()
  result = subprocess.run(command, cwd=PROJECT_ROOT, env=env or _env(), capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  check()
  return result


def fleeting(kill_at):
  kill_at.fleeting = True
  return kill_at


def after_more(count, how_many=1):
  """A kill point: once ``count()`` has grown by ``how_many`` since the run started (a finished piece of work)."""
  done = []
  def kill_at(lines):
    if not done:
      done.append(count())
    return count() >= done[0] + how_many
  return kill_at


_BUILD_CACHE = r"""
import sys
import wave_unet_tf as wut
from wave_unet_tf.data import cache
from wave_unet_tf.data.tracks import find_tracks
config = wut.get_preset("M5").replace(sample_rate=22050)
cache.cache_tracks(config, find_tracks(sys.argv[1], config), sys.argv[2], progress=False, num_workers=1)
"""


def _cache_contents(folder):
  folder = pathlib.Path(folder)
  return {p.name: p.read_bytes() for p in folder.iterdir() if not p.name.startswith(".")} if folder.is_dir() else {}


def test_a_damaged_data_cache_entry_is_rebuilt(toy_root, tmp_path):
  from wave_unet_tf.data import cache
  from wave_unet_tf.data.tracks import find_tracks
  config = wut.get_preset("M5").replace(sample_rate=8000)
  tracks = find_tracks(toy_root, config)
  cache.cache_tracks(config, tracks, tmp_path / "cache", progress=False)
  reference = _cache_contents(tmp_path / "cache")
  npys = sorted(p for p in (tmp_path / "cache").iterdir() if p.suffix == ".npy")
  npys[0].write_bytes(npys[0].read_bytes()[:-1000])  # cut short, header intact
  npys[1].with_suffix(".json").write_text("{\"name\": ")  # half a JSON
  npys[2].write_bytes(npys[2].read_bytes() + b"\0" * 64)  # grown
  cached = cache.cache_tracks(config, tracks, tmp_path / "cache", progress=False)
  assert len(cached) == 4 and _cache_contents(tmp_path / "cache") == reference
  for entry in cached:
    assert entry.load().shape == (2, entry.frames, 2)


@pytest.mark.slow
def test_building_the_data_cache_killed_at_any_moment_finishes_and_keeps_only_whole_entries(tmp_path):
  root = write_hq_dataset(tmp_path / "musdb", [f"Song {i}" for i in range(8)], seconds=10.0, subset="train",
                          subtype="PCM_16")
  reference_dir, cache_dir = tmp_path / "reference", tmp_path / "cache"
  command = [sys.executable, "-c", _BUILD_CACHE, str(root)]
  subprocess.run(command + [str(reference_dir)], env=_env(), check=True, timeout=300)
  reference = _cache_contents(reference_dir)
  assert len(reference) == 16

  def check():  # every file under a final name is the whole entry
    for name, content in _cache_contents(cache_dir).items():
      assert content == reference[name], name

  # Each run is killed as it finishes one or two more entries: at the start of the next track's decode and
  # write, with six or more tracks still to go.
  entries = lambda: len([name for name in _cache_contents(cache_dir) if name.endswith(".json")])
  kill_loop(command + [str(cache_dir)], [after_more(entries, n) for n in (1, 2, 1)], check)
  assert _cache_contents(cache_dir) == reference


@pytest.mark.slow
def test_evaluate_killed_at_any_moment_keeps_the_scored_tracks_and_finishes_the_rest(model_path, tmp_path):
  root = write_hq_dataset(tmp_path / "musdb", [f"Song {i}" for i in range(5)], seconds=2.0)
  out = tmp_path / "eval"
  command = [sys.executable, "-m", "wave_unet_tf.evaluate", "--model", model_path, "--musdb_root", str(root),
             "--is_wav", "--output_dir", str(out)]
  scored, seen = {}, []

  def check():
    folder = out / "test"
    now = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.json")} if folder.is_dir() else {}
    for name, stamp in scored.items():
      assert now.get(name) == stamp, f"{name} was scored again or lost"
    for name in now:
      json.loads((folder / name).read_text())  # whole, or not there
    scored.update(now)
    seen.append(len(now))

  # Each run is killed as it has scored one more track: among the separations, the scorings and the writes of
  # the next; three kills for five tracks, so each kill has work left after it.
  scored_tracks = lambda: len(list((out / "test").glob("*.json"))) if (out / "test").is_dir() else 0
  kill_loop(command, [after_more(scored_tracks) for _ in range(3)], check)
  assert any(0 < n < 5 for n in seen[:-1]), seen
  assert len(scored) == 5
  assert json.loads((out / "summary.json").read_text())["tracks"] == [f"Song {i}" for i in range(5)]


@pytest.mark.slow
def test_export_killed_at_any_moment_never_leaves_a_half_model_and_the_same_command_finishes(model_path, tmp_path):
  out = tmp_path / "exported"
  out.mkdir()
  command = [sys.executable, "-m", "wave_unet_tf.export", "--model", model_path, "--saved_model_dir",
             str(out / "served"), "--tflite", str(out / "model.tflite"), "--overwrite"]
  (tmp_path / "reference").mkdir()
  reference = tmp_path / "reference" / "model.tflite"
  subprocess.run([sys.executable, "-m", "wave_unet_tf.export", "--model", model_path, "--saved_model_dir",
                  str(tmp_path / "reference" / "served"), "--tflite", str(reference)],
                 cwd=PROJECT_ROOT, env=_env(), check=True, capture_output=True, timeout=300)

  def check():
    if (out / "served").exists():  # a SavedModel under its name is whole
      assert (out / "served" / "saved_model.pb").stat().st_size > 0
      assert json.loads((out / "served" / "assets" / "wave_unet_config.json").read_text())
      assert (out / "served" / "variables" / "variables.index").exists()
    if (out / "model.tflite").exists():
      assert (out / "model.tflite").stat().st_size == reference.stat().st_size
    leftovers = [p.name for p in out.iterdir() if p.name not in ("served", "model.tflite")]
    assert all(name.startswith(".") for name in leftovers), leftovers  # only temporary names

  # Kill points: as the TFLite export starts (the SavedModel just written), as its fixed-window SavedModel is
  # converted (seconds of work after each), and while a SavedModel replacing the first is written (when seen).
  saved = lambda lines: any(line.startswith("wrote SavedModel") for line in lines)
  converting = lambda lines: any((p / "fixed").is_dir() for p in out.glob(".tflite-export-*"))
  replacing = fleeting(lambda lines: any(out.glob(".served.tmp-*")))
  kill_loop(command, [saved, converting, replacing], check)
  loaded = wut.load_model(str(out / "served"))
  assert loaded.config.source_names == ("accompaniment", "vocals")


def test_a_damaged_score_file_counts_as_not_scored(tmp_path):
  from wave_unet_tf.evaluation import scoring
  path = tmp_path / "test" / "Song.json"
  path.parent.mkdir()
  path.write_text('{"targets": [{"name": "vocals", "frames": [')
  assert not scoring.is_scored(str(path))
  path.write_text('{"targets": []}')
  assert scoring.is_scored(str(path))
