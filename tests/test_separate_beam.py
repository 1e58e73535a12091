"""wave-unet-separate-beam: end to end on Beam's FnApiRunner with two worker processes (loopback only), and its
parts in process (names, runner options, a remote filesystem, model errors)."""

import gc
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile

import wave_unet_tf as wut
from conftest import assert_quiet

pytest.importorskip("apache_beam")

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]
UNUSED_MODEL = "never-loaded.keras"  # the checks before the pipeline runs
TWO_PROCESSES = ("--direct_num_workers=2", "--direct_running_mode=multi_processing")


def command(module, *args):
  env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as a user runs it
  return [sys.executable, "-m", f"wave_unet_tf.{module}", *map(str, args)], dict(cwd=PROJECT_ROOT, env=env)


def run(module, *args):
  argv, kwargs = command(module, *args)
  return subprocess.run(argv, capture_output=True, text=True, timeout=300, **kwargs)


def song(seconds, rate, channels, seed):
  return np.random.default_rng(seed).uniform(-0.4, 0.4, (int(seconds * rate), channels)).astype(np.float32)


def stems_under(folder):
  return sorted(p for p in pathlib.Path(folder).rglob("*.wav") if not p.name.startswith("."))


def file_states(folder):
  return {str(p): (p.stat().st_ino, p.stat().st_mtime_ns) for p in pathlib.Path(folder).rglob("*")
          if p.is_file() and p.name != "failures.jsonl"}


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
  from wave_unet_tf.model.saving import save_model
  config = wut.get_preset("M5").replace(num_layers=4, num_initial_filters=4, sample_rate=16000)
  return save_model(wut.build_model(config), str(tmp_path_factory.mktemp("model") / "tiny.keras"))


GOOD = {"stereo": (1.0, 44100, 2), "live/mono": (0.7, 22050, 1), "twin": (0.4, 16000, 2),
        **{f"more{i}": (1.5, 32000, 2) for i in range(4)}}


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory, model_path):
  """Good, damaged and empty songs and two songs of one name, separated by the Beam pipeline three times: a
  run killed (SIGKILL, the command and its workers) when its first song is marked finished, a run that
  finishes the job, and a re-run; then by wave-unet-separate."""
  root = tmp_path_factory.mktemp("catalogue")
  songs = root / "songs"
  (songs / "live").mkdir(parents=True)
  for i, (name, (seconds, rate, channels)) in enumerate(GOOD.items()):
    soundfile.write(str(songs / f"{name}.{'flac' if name != 'stereo' else 'wav'}"),
                    song(seconds, rate, channels, i), rate)
  soundfile.write(str(songs / "twin.wav"), song(0.4, 16000, 2, 99), 16000)  # after twin.flac: would overwrite it
  (songs / "damaged.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00garbage")
  soundfile.write(str(songs / "empty.wav"), np.zeros((0, 2), np.float32), 44100)
  (songs / "notes.txt").write_text("not audio: not one of the glob's songs")
  out = root / "beam"
  flags = ("--model", model_path, "--window_seconds", "0.5", "--jit_compile=false")
  beam_args = (f"--input={songs}/**", f"--output_dir={out}", *flags, *TWO_PROCESSES)
  killed = kill_at_first_marker(out, *beam_args)
  finished = run("separate_beam", *beam_args)
  states = file_states(out)
  rerun = run("separate_beam", *beam_args)
  reference = run("separate", "--output_dir", root / "separate", "--progress=false", *flags, songs)
  return dict(songs=songs, beam=out, separate=root / "separate", killed=killed, finished=finished,
              states_after_finishing=states, rerun=rerun, reference=reference)


def kill_at_first_marker(out, *args):
  """Runs the command until a song's completion marker appears, then kills it and its worker processes;
  returns the markers and the stems under final names (read whole, or None) at that moment."""
  argv, kwargs = command("separate_beam", *args)
  process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, **kwargs)
  try:
    while process.poll() is None and not list((out / ".separated").rglob("*.json")):
      time.sleep(0.01)  # waiting for the event, not for a time
    ended_by_itself = process.poll() is not None
    os.killpg(process.pid, signal.SIGKILL)
  finally:
    process.communicate(timeout=60)
  stems = {}
  for stem in stems_under(out):
    try:
      stems[stem] = soundfile.read(str(stem), always_2d=True)[0].shape
    except RuntimeError:  # unreadable: a partial file
      stems[stem] = None
  return dict(ended_by_itself=ended_by_itself, markers=list((out / ".separated").rglob("*.json")), stems=stems)


@pytest.mark.slow
def test_stems_equal_wave_unet_separate(catalogue):
  assert catalogue["reference"].returncode == 1, catalogue["reference"].stderr  # damaged, empty, a twin
  expected = stems_under(catalogue["separate"])
  assert len(expected) == 2 * len(GOOD)
  assert [p.relative_to(catalogue["beam"]) for p in stems_under(catalogue["beam"])] == \
      [p.relative_to(catalogue["separate"]) for p in expected]
  for reference in expected:
    relative = reference.relative_to(catalogue["separate"])
    ours, rate = soundfile.read(str(catalogue["beam"] / relative), always_2d=True)
    theirs, reference_rate = soundfile.read(str(reference), always_2d=True)
    assert rate == reference_rate and ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, atol=1e-6, err_msg=str(relative))


@pytest.mark.slow
def test_bad_songs_are_reported_and_the_rest_separated(catalogue):
  result, songs = catalogue["finished"], catalogue["songs"]
  assert result.returncode == 1, result.stderr
  separated, skipped, failed = result.stdout.splitlines()[-1].split(", ")
  assert failed == "3 failed" and int(separated.split()[0]) + int(skipped.split()[0]) == len(GOOD), result.stdout
  report = [json.loads(line) for line in (catalogue["beam"] / "failures.jsonl").read_text().splitlines()]
  errors = {entry["path"]: entry["error"] for entry in report}
  assert set(errors) == {str(songs / "damaged.wav"), str(songs / "empty.wav"), str(songs / "twin.wav")}
  assert "no audio samples" in errors[str(songs / "empty.wav")]
  assert errors[str(songs / "damaged.wav")].startswith(f"{songs / 'damaged.wav'}: ")
  assert f"written from {songs / 'twin.flac'}" in errors[str(songs / "twin.wav")]
  lines = result.stderr.splitlines()
  for error in errors.values():  # each said as wave-unet-separate says it
    assert f"separate_beam.py: error: {error}" in lines
  assert lines[-1] == (f"separate_beam.py: error: 3 of {len(GOOD) + 3} input(s) failed; "
                       f"see {catalogue['beam'] / 'failures.jsonl'}")
  assert_quiet(result.stdout, result.stderr)
  assert "Traceback" not in result.stderr
  assert not (catalogue["beam"] / "damaged").exists() and not (catalogue["beam"] / "empty").exists()


@pytest.mark.slow
def test_killed_run_is_finished_by_the_next_with_no_partial_file(catalogue):
  killed = catalogue["killed"]
  assert not killed["ended_by_itself"], "the run ended before its first song was marked finished"
  assert 1 <= len(killed["markers"]) < len(GOOD)
  for stem, shape in killed["stems"].items():  # what the kill left under final names is whole
    seconds, rate, channels = GOOD[str(stem.parent.relative_to(catalogue["beam"]))]
    assert shape == (int(seconds * rate), channels), stem
  skipped = int(catalogue["finished"].stdout.splitlines()[-1].split(", ")[1].split()[0])
  assert skipped >= len(killed["markers"])
  assert not list(catalogue["beam"].rglob(".tmp-*")), "a temporary file left"


@pytest.mark.slow
def test_a_rerun_skips_finished_songs_and_rewrites_nothing(catalogue):
  result = catalogue["rerun"]
  assert result.returncode == 1, result.stderr
  assert result.stdout.splitlines()[-1] == f"0 separated, {len(GOOD)} skipped, 3 failed", result.stdout
  assert file_states(catalogue["beam"]) == catalogue["states_after_finishing"]
  markers = (catalogue["beam"] / ".separated").rglob("*.json")
  assert sorted(str(p.relative_to(catalogue["beam"] / ".separated"))[:-len(".json")] for p in markers) == \
      sorted(GOOD)


def test_read_only_output_folder_is_one_clear_error(tmp_path):
  songs = tmp_path / "songs"
  songs.mkdir()
  soundfile.write(str(songs / "a.wav"), song(0.2, 16000, 2, 0), 16000)
  folder = tmp_path / "read_only"
  folder.mkdir()
  if os.geteuid() == 0:  # root writes through permissions: a read-only mount stops it
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
      pytest.skip(f"cannot mount a read-only tmpfs here: {mounted.stderr.strip()}")
  else:
    folder.chmod(0o555)
  try:
    result = run("separate_beam", f"--input={songs}/*.wav", f"--output_dir={folder}/out", "--model", UNUSED_MODEL)
  finally:
    if os.geteuid() == 0:
      subprocess.run(["umount", "-l", str(folder)], check=True)
    else:
      folder.chmod(0o755)
  assert result.returncode == 1
  assert result.stderr.strip().splitlines() == [
      f"separate_beam.py: error: --output_dir {folder}/out: not writable "
      f"({'Read-only file system' if os.geteuid() == 0 else 'Permission denied'})"], result.stderr
  assert result.stdout == ""


def test_flags_beam_does_not_know_either_are_refused(tmp_path):
  result = run("separate_beam", f"--input={tmp_path}/*.wav", f"--output_dir={tmp_path}/out", "--model", UNUSED_MODEL,
               "--project=p", "--no_such_flag=1")
  assert result.returncode == 1
  assert result.stderr.strip() == ("separate_beam.py: error: unknown flag --no_such_flag (neither this command's "
                                   "nor Beam's; see --helpfull and Beam's pipeline options)")
  result = run("separate_beam", f"--input={tmp_path}/*.wav", f"--output_dir={tmp_path}/out", "--model", UNUSED_MODEL)
  assert result.stderr.strip() == f"separate_beam.py: error: --input={tmp_path}/*.wav: matches no files"


def test_names_and_runner_options():
  from apache_beam.options.pipeline_options import DirectOptions, StandardOptions

  from wave_unet_tf.batch import pipeline, songs
  from wave_unet_tf.separation.outputs import OutputOptions
  assert songs.glob_base("gs://bucket/music/**/*.flac") == "gs://bucket/music/"
  assert songs.track_of("gs://bucket/music/live/a.stem.mp4", "gs://bucket/music/") == "live/a"
  assert songs.is_song("/m/a.flac", "/m/", "/out") and not songs.is_song("/m/.a.flac", "/m/", "/out")
  assert not songs.is_song("/m/out/a/vocals.wav", "/m/", "/m/out") and not songs.is_song("/m/a.txt", "/m/", "/o")
  assert songs.output_key("a", OutputOptions()) != songs.output_key("b", OutputOptions())
  assert songs.output_key("a", OutputOptions(filename="{stem}.{ext}")) == \
      songs.output_key("b", OutputOptions(filename="{stem}.{ext}"))

  local = pipeline.pipeline_options(["--direct_num_workers=2"])
  assert local.view_as(StandardOptions).runner == pipeline.LOCAL_RUNNER
  assert local.view_as(DirectOptions).direct_running_mode == "multi_processing"
  assert pipeline.processes_per_machine(local) == 2
  assert songs.fit_threads(songs.Job("m", "o", processes_per_machine=2)) == \
      max(1, len(os.sched_getaffinity(0)) // 2)
  assert songs.fit_threads(songs.Job("m", "o", threads=3)) == 3
  dataflow = pipeline.pipeline_options(["--runner=DataflowRunner", "--experiments=no_use_multiple_sdk_containers"])
  assert pipeline.processes_per_machine(dataflow) == 1
  assert pipeline.processes_per_machine(pipeline.pipeline_options(["--runner=DataflowRunner"])) is None
  assert pipeline.processes_per_machine(pipeline.pipeline_options(["--runner=FlinkRunner",
                                                                   "--sdk_worker_parallelism=4"])) == 4


@pytest.fixture
def remote_filesystem(tmp_path):
  """``remote://`` paths: a Beam filesystem (any subclass of Beam's FileSystem is found by its scheme) kept in
  a local folder, standing in for gs:// or s3://."""
  from apache_beam.io.filesystem import MatchResult
  from apache_beam.io.localfilesystem import LocalFileSystem

  root = str(tmp_path / "remote")

  class RemoteFileSystem(LocalFileSystem):
    @classmethod
    def scheme(cls):
      return "remote"

    def _local(self, path):
      return os.path.join(root, path[len("remote://"):])

    def join(self, base, *paths):
      return "/".join([base.rstrip("/"), *paths])

    def create(self, path, *args, **kwargs):
      return super().create(self._local(path), *args, **kwargs)

    def open(self, path, *args, **kwargs):
      return super().open(self._local(path), *args, **kwargs)

    def exists(self, path):
      return super().exists(self._local(path))

    def rename(self, sources, destinations):
      return super().rename([self._local(p) for p in sources], [self._local(p) for p in destinations])

    def delete(self, paths):
      return super().delete([self._local(p) for p in paths])

    def match(self, patterns, limits=None):
      results = super().match([self._local(p) for p in patterns], limits)
      for result in results:
        for metadata in result.metadata_list:
          metadata.path = "remote://" + os.path.relpath(metadata.path, root)
      return [MatchResult(p, r.metadata_list) for p, r in zip(patterns, results)]

  yield pathlib.Path(root)
  del RemoteFileSystem  # Beam finds filesystems among FileSystem's live subclasses
  gc.collect()


@pytest.mark.slow
def test_songs_on_a_remote_filesystem_are_staged_and_published_whole(remote_filesystem, model_path):
  from wave_unet_tf.audio import AudioError
  from wave_unet_tf.batch import songs
  (remote_filesystem / "music").mkdir(parents=True)
  soundfile.write(str(remote_filesystem / "music" / "a.flac"), song(0.6, 16000, 2, 5), 16000)
  (remote_filesystem / "music" / "bad.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt junk")
  job = songs.Job(model=model_path, output_dir="remote://out", window_seconds=0.5, jit_compile=False)
  worker = songs.Worker(job)
  assert worker.separate("remote://music/a.flac", "a") == pytest.approx(0.6)
  assert worker.outputs("a") == {s: f"remote://out/a/{s}.wav" for s in ("accompaniment", "vocals")}
  expected = wut.Separator(model_path, window_seconds=0.5, jit_compile=False).separate(
      soundfile.read(str(remote_filesystem / "music" / "a.flac"), dtype="float32")[0], 16000)
  for source in ("accompaniment", "vocals"):
    np.testing.assert_allclose(soundfile.read(str(remote_filesystem / "out" / "a" / f"{source}.wav"))[0],
                               expected[source], atol=1e-5)
  marker = json.loads((remote_filesystem / "out" / ".separated" / "a.json").read_text())
  assert marker["input"] == "remote://music/a.flac" and marker["outputs"] == worker.outputs("a")
  assert worker.separate("remote://music/a.flac", "a") is None  # finished: skipped
  with pytest.raises(AudioError, match=r"^remote://music/bad\.wav: "):  # named as the user named it
    worker.separate("remote://music/bad.wav", "bad")
  assert sorted(p.name for p in (remote_filesystem / "out").rglob("*")) == \
      sorted([".separated", "a", "a.json", "accompaniment.wav", "vocals.wav"])  # no temporaries left


def test_a_model_that_cannot_serve_the_job_is_the_jobs_error_not_a_songs(tmp_path, model_path):
  from wave_unet_tf.batch import songs
  from wave_unet_tf.separation.outputs import OutputOptions
  soundfile.write(str(tmp_path / "a.wav"), song(0.2, 16000, 2, 0), 16000)
  missing = songs.Worker(songs.Job(model=str(tmp_path / "missing.keras"), output_dir=str(tmp_path / "out")))
  with pytest.raises(songs.ModelError, match="missing.keras"):
    missing.separate(str(tmp_path / "a.wav"), "a")
  no_drums = songs.Worker(songs.Job(model=model_path, output_dir=str(tmp_path / "out"), jit_compile=False,
                                    options=OutputOptions(stems=("drums",))))
  with pytest.raises(songs.ModelError, match="--stems=drums: not a source of this model"):
    no_drums.separate(str(tmp_path / "a.wav"), "a")
  assert not (tmp_path / "out").exists()
  from wave_unet_tf.batch.pipeline import SONG_ERRORS
  assert not issubclass(songs.ModelError, SONG_ERRORS)  # it fails the job: no report line per song


def test_a_worker_at_int8_writes_what_the_separator_at_int8_gives_and_its_marker_says_so(tmp_path, model_path,
                                                                                          monkeypatch):
  from wave_unet_tf.batch import songs
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
  soundfile.write(str(tmp_path / "a.wav"), song(0.6, 16000, 2, 7), 16000)
  job = songs.Job(model=model_path, output_dir=str(tmp_path / "out"), window_seconds=0.5, jit_compile=False,
                  precision="int8")
  assert songs.Worker(job).separate(str(tmp_path / "a.wav"), "a") == pytest.approx(0.6)
  expected = wut.Separator(model_path, window_seconds=0.5, precision="int8").separate(
      soundfile.read(str(tmp_path / "a.wav"), dtype="float32")[0], 16000)
  for source in ("accompaniment", "vocals"):
    np.testing.assert_allclose(soundfile.read(str(tmp_path / "out" / "a" / f"{source}.wav"))[0], expected[source],
                               atol=1e-6)
  marker = json.loads((tmp_path / "out" / ".separated" / "a.json").read_text())
  assert marker["settings"]["precision"] == "int8"
