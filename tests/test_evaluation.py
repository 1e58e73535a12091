"""Evaluation with museval: museval's JSON layout, summaries, resuming, the mixture baseline, real MUSDB18."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import soundfile

import wave_unet_tf as wut
from wave_unet_tf.evaluation import MIXTURE_BASELINE, POOLED, TRACK_MEDIANS, evaluate
from wave_unet_tf.separation import Separator

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]
from conftest import MUSDB_SAMPLE, assert_quiet
STEMS = ("bass", "drums", "other", "vocals")


def tiny_separator(preset):
  config = wut.get_preset(preset).replace(num_layers=3, num_initial_filters=4, sample_rate=11025)
  return Separator(wut.build_model(config), window_seconds=1.0, jit_compile=False)


def write_hq_folder(root, subset="test", names=("Song A", "Song B"), seconds=1.0, rate=44100):
  """A tiny MUSDB18-HQ layout folder: <subset>/<track>/{mixture,bass,drums,other,vocals}.wav."""
  rng = np.random.default_rng(0)
  for name in names:
    folder = pathlib.Path(root) / subset / name
    folder.mkdir(parents=True)
    stems = {s: (0.1 * rng.standard_normal((int(seconds * rate), 2))).astype(np.float32) for s in STEMS}
    for stem, waveform in stems.items():
      soundfile.write(str(folder / f"{stem}.wav"), waveform, rate, subtype="FLOAT")
    soundfile.write(str(folder / "mixture.wav"), sum(stems.values()), rate, subtype="FLOAT")
  return root


@pytest.fixture(scope="module")
def hq_root(tmp_path_factory):
  return write_hq_folder(tmp_path_factory.mktemp("musdb_hq"))


def test_scores_every_track_in_museval_layout_with_a_baseline(hq_root, tmp_path):
  out = tmp_path / "eval"
  summary = evaluate(tiny_separator("M5"), str(hq_root), subset="test", is_wav=True, output_dir=str(out),
                     baseline=True, track_names=["Song A"], progress=False, log=lambda *_: None)
  for method_dir in (out, out / MIXTURE_BASELINE):
    for name in ("Song A",):
      scores = json.loads((method_dir / "test" / f"{name}.json").read_text())
      targets = {t["name"]: t for t in scores["targets"]}
      assert set(targets) == {"accompaniment", "vocals"}
      assert len(targets["vocals"]["frames"]) == 1  # 1 s windows over 1 s
      assert set(targets["vocals"]["frames"][0]["metrics"]) == {"SDR", "SIR", "SAR", "ISR"}
  assert summary["tracks"] == ["Song A"]
  for method in ("model", MIXTURE_BASELINE):
    for source in ("accompaniment", "vocals"):
      for metric in ("SDR", "SIR", "SAR", "ISR"):
        entry = summary["methods"][method][source][metric]
        assert np.isfinite(entry[POOLED]) and np.isfinite(entry[TRACK_MEDIANS]) and entry["tracks"] == 1
  # Mixture as vocals estimate: vocals are a quarter of the mixture's power here, so SDR is about -6 dB.
  assert summary["methods"][MIXTURE_BASELINE]["vocals"]["SDR"][POOLED] == pytest.approx(-4.8, abs=1.5)
  saved = json.loads((out / "summary.json").read_text())
  assert saved["methods"]["model"]["vocals"]["SDR"][POOLED] == pytest.approx(
      summary["methods"]["model"]["vocals"]["SDR"][POOLED])
  header = (out / "summary.csv").read_text().splitlines()[0]
  assert header == f"method,source,metric,{POOLED},{TRACK_MEDIANS},tracks,frames"


def test_second_run_skips_scored_tracks(hq_root, tmp_path):
  out = tmp_path / "eval"
  separator = tiny_separator("M5")
  evaluate(separator, str(hq_root), is_wav=True, output_dir=str(out), track_names=["Song A"], progress=False,
           log=lambda *_: None)
  first = out / "test" / "Song A.json"
  stamp = first.stat().st_mtime_ns
  messages = []
  summary = evaluate(separator, str(hq_root), is_wav=True, output_dir=str(out), progress=False,
                     log=messages.append)
  assert first.stat().st_mtime_ns == stamp
  assert "skipping 1 already scored track(s)" in messages[0]
  assert (out / "test" / "Song B.json").exists() and summary["methods"]["model"]["vocals"]["SDR"]["tracks"] == 2


def test_medians_pool_frames_or_tracks():
  from wave_unet_tf.evaluation import summary
  scores = {"vocals": {m: [np.array([1.0, 2.0, 3.0]), np.array([10.0, np.nan])] for m in summary.METRICS}}
  result = summary.summarize_scores(scores)["vocals"]["SDR"]
  assert result[POOLED] == 2.5  # median of 1, 2, 3, 10 (NaN frames ignored, as museval)
  assert result[TRACK_MEDIANS] == 6.0  # median of 2 and 10
  assert result["frames"] == 4


@pytest.mark.parametrize("make_root,is_wav", [(lambda p: p, False), (lambda p: p, True),
                                              (lambda p: p / "does-not-exist", True)])
def test_a_root_without_tracks_is_a_one_line_error_naming_it(tmp_path, make_root, is_wav):
  root = make_root(tmp_path)
  with pytest.raises(ValueError, match=str(root)) as error:
    evaluate(tiny_separator("M5"), str(root), is_wav=is_wav, output_dir=str(tmp_path / "out"), progress=False)
  assert "\n" not in str(error.value)


def test_evaluate_command_rejects_an_empty_root_before_loading_the_model(tmp_path):
  result = subprocess.run([sys.executable, "-m", "wave_unet_tf.evaluate", "--model", str(tmp_path / "none.keras"),
                           "--musdb_root", str(tmp_path), "--is_wav"], capture_output=True, text=True,
                          cwd=PROJECT_ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, timeout=120)
  assert result.returncode == 1
  assert "no tracks in" in result.stderr and str(tmp_path) in result.stderr
  assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("preset,sources", [pytest.param("M6", STEMS, marks=pytest.mark.slow),
                                            ("M5", ("accompaniment", "vocals"))])
def test_real_musdb18_sample_through_musdb(tmp_path, preset, sources):
  if not MUSDB_SAMPLE.is_dir():
    pytest.fail(f"fixture missing: {MUSDB_SAMPLE}")
  summary = evaluate(tiny_separator(preset), str(MUSDB_SAMPLE), subset="train", output_dir=str(tmp_path),
                     progress=False, log=lambda *_: None)
  scores = json.loads((tmp_path / "train" / "Music Delta - 80s Rock.json").read_text())
  assert {t["name"] for t in scores["targets"]} == set(sources)
  assert len(scores["targets"][0]["frames"]) == 6  # a 6.8 s excerpt in 1 s windows (the partial one dropped)
  assert set(summary["methods"]["model"]) == set(sources)


@pytest.mark.slow
def test_evaluate_command_with_parallel_jobs_and_baseline(hq_root, tmp_path):
  from wave_unet_tf.model.saving import save_model
  config = wut.get_preset("M5").replace(num_layers=3, num_initial_filters=4, sample_rate=11025)
  model_path = save_model(wut.build_model(config), str(tmp_path / "m6.keras"))
  out = tmp_path / "eval"
  command = [sys.executable, "-m", "wave_unet_tf.evaluate", "--model", model_path, "--musdb_root", str(hq_root),
             "--is_wav", "--subset", "test", "--output_dir", str(out), "--jobs", "2", "--baseline"]
  result = subprocess.run(command, capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
  assert result.returncode == 0, result.stderr
  assert_quiet(result.stdout, result.stderr)
  assert "median (pooled frames)" in result.stdout and MIXTURE_BASELINE in result.stdout
  for name in ("Song A", "Song B"):
    assert (out / "test" / f"{name}.json").exists() and (out / MIXTURE_BASELINE / "test" / f"{name}.json").exists()
  rows = (out / "summary.csv").read_text().splitlines()
  assert len(rows) == 1 + 2 * 2 * 4  # two methods, two sources, four metrics
  umask = os.umask(0)
  os.umask(umask)
  for written in (out / "summary.csv", out / "summary.json", out / "test" / "Song A.json"):
    assert os.stat(written).st_mode & 0o777 == 0o666 & ~umask, written  # not mkstemp's 0600


@pytest.mark.parametrize("split_mode", ["official", "random"])
def test_evaluation_finds_and_splits_tracks_exactly_as_training(toy_root, tmp_path, split_mode):
  from wave_unet_tf.data.tracks import find_tracks
  from wave_unet_tf.evaluation.tracks import open_tracks

  config = wut.get_preset("M5")
  for split in ("train", "valid"):
    training = [t.name for t in find_tracks(str(toy_root), config, "train", split, split_mode=split_mode)]
    tracks, is_wav = open_tracks(str(toy_root), "train", split, split_mode=split_mode)  # layout detected
    assert is_wav and [t.name for t in tracks] == training
