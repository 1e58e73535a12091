"""Training end to end through the real command: the run folder, resuming after SIGKILL, strategies."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from conftest import PROJECT_ROOT, assert_quiet
from wave_unet_tf.training import checkpoints as checkpoint_files

TINY = ["--preset=M5", "--num_layers=3", "--num_initial_filters=4", "--sample_rate=8000", "--num_channels=1",
        "--num_frames=256", "--batch_size=4", "--steps_per_epoch=6", "--max_epochs=2", "--patience=1",
        "--max_validation_batches=2", "--checkpoint_every=3", "--summary_every=1"]


def train(toy_root, model_dir, *extra, env=None, check=True):
  command = [sys.executable, str(PROJECT_ROOT / "train.py"), f"--musdb_root={toy_root}",
             f"--model_dir={model_dir}", f"--cache_dir={model_dir}/../cache", *TINY, *extra]
  result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=PROJECT_ROOT)
  if check and result.returncode != 0:
    raise AssertionError(result.stderr[-3000:])
  return result


def latest_checkpoint(folder):
  """The newest checkpoint file in ``folder`` (None: none), and its step."""
  latest = checkpoint_files.CheckpointFolder(str(folder)).latest
  return latest, checkpoint_files.number(latest)


def summary_of(result):
  return json.loads(result.stdout.strip().splitlines()[-1])


def tags(log_dir):
  return {value.tag for name in os.listdir(log_dir)
          for event in tf.compat.v1.train.summary_iterator(os.path.join(log_dir, name)) for value in event.summary.value}


def scalars(log_dir, tag="loss"):
  values = {}
  for name in sorted(os.listdir(log_dir)):
    for event in tf.compat.v1.train.summary_iterator(os.path.join(log_dir, name)):
      for value in event.summary.value:
        if value.tag == tag:
          values[event.step] = float(tf.make_ndarray(value.tensor))
  return values


@pytest.mark.slow
def test_both_stages_write_the_run_folder(toy_root, tmp_path):
  model_dir = tmp_path / "run"
  result = train(toy_root, model_dir)
  assert_quiet(result.stdout, result.stderr)
  summary = summary_of(result)
  # Stage 0 and the fine-tuning stage, each stopped by max_epochs=2 or patience=1.
  assert summary["finished"] and summary["stage"] == 2 and summary["epoch"] >= 2
  assert json.loads((model_dir / "config.json").read_text())["num_layers"] == 3
  assert (model_dir / "best.keras").exists() and latest_checkpoint(model_dir / "checkpoints")[0]
  assert set(os.listdir(model_dir / "logs")) == {"train", "valid"}
  assert scalars(model_dir / "logs" / "valid") and scalars(model_dir / "logs" / "train", "learning_rate")
  assert {"separated/vocals", "separated/accompaniment", "mixture"} <= tags(model_dir / "logs" / "valid")
  lr = scalars(model_dir / "logs" / "train", "learning_rate")
  assert min(lr.values()) == pytest.approx(1e-5) and max(lr.values()) == pytest.approx(1e-4)

  import wave_unet_tf as wut
  model = wut.load_model(str(model_dir))
  assert model.wave_unet_config.num_layers == 3


@pytest.mark.slow
def test_killed_run_resumes_from_its_last_checkpoint(toy_root, tmp_path):
  model_dir = tmp_path / "run"
  command = [sys.executable, str(PROJECT_ROOT / "train.py"), f"--musdb_root={toy_root}", f"--model_dir={model_dir}",
             f"--cache_dir={tmp_path}/cache", *TINY, "--nofine_tune", "--max_epochs=50", "--patience=50",
             "--checkpoint_every=2"]
  process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=PROJECT_ROOT)
  checkpoints = model_dir / "checkpoints"
  deadline = time.time() + 240
  while not (checkpoints.exists() and len([f for f in os.listdir(checkpoints) if f.endswith(".npz")]) >= 2):
    assert process.poll() is None and time.time() < deadline, "the run ended, or saved no second checkpoint"
    time.sleep(0.05)
  process.send_signal(signal.SIGKILL)
  process.wait()
  killed_at = latest_checkpoint(checkpoints)[1]
  assert killed_at >= 2

  resumed = summary_of(train(toy_root, model_dir, "--nofine_tune", "--max_epochs=50", "--patience=50",
                             f"--max_steps={killed_at + 4}"))
  assert resumed["step"] == killed_at + 4 and not resumed["finished"]
  # The resumed run logged only steps after the checkpoint it restored.
  steps = sorted(scalars(model_dir / "logs" / "train"))
  assert steps[-1] == killed_at + 4


@pytest.mark.slow
def test_a_model_dir_of_another_config_or_settings_is_refused(toy_root, tmp_path):
  model_dir = tmp_path / "run"
  train(toy_root, model_dir, "--max_steps=1")
  # Stopped before its first validation, the run still leaves a model to separate with.
  assert (model_dir / "best.keras").exists()
  saved = json.loads((model_dir / "run_settings.json").read_text())
  assert saved["run"]["seed"] == 0 and saved["data"]["split_mode"] == "official"
  result = train(toy_root, model_dir, "--max_steps=2", "--num_initial_filters=8", check=False)
  assert result.returncode != 0
  message = result.stderr.strip().splitlines()[-1]
  assert "holds a run of a different config" in message and "num_initial_filters: 4 -> 8" in message
  result = train(toy_root, model_dir, "--max_steps=2", "--seed=3", "--split_mode=random", check=False)
  assert result.returncode != 0
  message = result.stderr.strip().splitlines()[-1]
  assert "--seed: 0 -> 3" in message and "--split_mode: 'official' -> 'random'" in message
  # Lengths and intervals may change.
  assert summary_of(train(toy_root, model_dir, "--max_steps=2", "--checkpoint_every=1"))["step"] == 2


@pytest.mark.slow
def test_a_one_track_dataset_trains_without_validation_and_says_so_once(tmp_path):
  from wave_unet_tf.data.toy import write_toy_dataset
  root = tmp_path / "one"
  write_toy_dataset(str(root), num_tracks=1, seconds=2.0, seed=3, num_test_tracks=1)
  model_dir = tmp_path / "run"
  result = train(root, model_dir, "--nofine_tune", "--max_epochs=1")
  summary = summary_of(result)
  assert summary["finished"] and summary["epoch"] == 1 and (model_dir / "best.keras").exists()
  notices = [line for line in result.stderr.splitlines() if "too few to split" in line]
  assert len(notices) == 1 and "training without validation" in notices[0]


@pytest.mark.slow
def test_validation_tracks_can_come_from_another_root(toy_root, tmp_path):
  from wave_unet_tf.data.toy import write_toy_dataset
  root = tmp_path / "one"
  write_toy_dataset(str(root), num_tracks=1, seconds=2.0, seed=3, num_test_tracks=1)
  model_dir = tmp_path / "run"
  summary = summary_of(train(root, model_dir, "--nofine_tune", "--max_epochs=1", f"--validation_root={toy_root}"))
  assert summary["finished"] and summary["best_validation_loss"] < float("inf")


@pytest.mark.parametrize("args,message", [
    (["--preset=M9"], "valid presets: M1"),
    (["--preset=M5", "--nonsense=1"], "valid flags:"),
    (["--preset=M5", "--musdb_root=/no/such/root", "--model_dir=/tmp/x"], "wave-unet-toy-data"),
])
def test_bad_flags_are_one_line_errors(args, message):
  result = subprocess.run([sys.executable, str(PROJECT_ROOT / "train.py"), *args], capture_output=True, text=True)
  assert result.returncode != 0
  assert message in result.stderr.strip().splitlines()[-1]
  assert "Traceback" not in result.stderr


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(toy_root, tmp_path, monkeypatch):
  import wave_unet_tf as wut
  from wave_unet_tf.data import pipeline
  from wave_unet_tf.training import trainer as training

  config = wut.get_preset("M5").replace(num_layers=3, num_initial_filters=4, sample_rate=8000, num_channels=1,
                                        num_frames=256, batch_size=2, steps_per_epoch=100)
  real_dataset = pipeline.training_dataset

  def poisoned(*args, **kwargs):  # good batches, then one with a NaN, as a corrupt source would give
    good = real_dataset(*args, **kwargs)
    nan = good.map(lambda mix, targets: (mix * np.nan, targets))
    return good.take(4).concatenate(nan)

  monkeypatch.setattr(pipeline, "training_dataset", poisoned)
  data = training.DataOptions(musdb_root=str(toy_root), cache_dir=str(tmp_path / "cache"), max_validation_batches=1)
  trainer = training.Trainer(config, str(tmp_path / "run"), data, training.RunOptions(checkpoint_every=2))
  with pytest.raises(training.TrainingError, match=r"loss is nan at step 5; .*ckpt-4.npz is kept"):
    trainer.train()
  path, _ = latest_checkpoint(tmp_path / "run" / "checkpoints")
  assert checkpoint_files.read(path)[1]["counters"]["step"] == 4


MIRRORED_SCRIPT = """
import json, sys
import numpy as np
from wave_unet_tf.training import strategy as strategies
strategies.split_cpu(2)
import keras, tensorflow as tf
import wave_unet_tf as wut
from wave_unet_tf.data import pipeline, tracks
from wave_unet_tf.training.step import make_optimizer, make_train_step
config = wut.get_preset("M5").replace(num_layers=3, num_initial_filters=4, sample_rate=8000, num_channels=2,
                                      num_frames=256)
strategy = strategies.make_strategy(sys.argv[1])
found = tracks.find_tracks(sys.argv[2], config, subset="train")
keras.utils.set_random_seed(0)
with strategy.scope():
  model = wut.build_model(config)
  optimizer = make_optimizer(config)
batches = strategy.experimental_distribute_dataset(pipeline.training_dataset(config, found, sys.argv[3], seed=5,
                                                                            batch_size=8))
step = make_train_step(model, optimizer, strategy, 8)
iterator = iter(batches)
print(json.dumps({"replicas": strategy.num_replicas_in_sync, "losses": [float(step(next(iterator))) for _ in range(3)]}))
"""


@pytest.mark.slow
def test_mirrored_on_two_cpus_matches_one_device_at_the_same_global_batch(toy_root, tmp_path):
  results = {}
  for name in ("default", "mirrored"):
    out = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT, name, str(toy_root), str(tmp_path / "cache")],
                         capture_output=True, text=True, check=True).stdout
    results[name] = json.loads(out.strip().splitlines()[-1])
  assert results["mirrored"]["replicas"] == 2 and results["default"]["replicas"] == 1
  np.testing.assert_allclose(results["mirrored"]["losses"], results["default"]["losses"], rtol=1e-4)


def _free_ports(count):
  sockets = [socket.socket() for _ in range(count)]
  for s in sockets:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


@pytest.mark.slow
def test_multi_worker_trains_with_two_processes_and_only_the_chief_writes(toy_root, tmp_path):
  ports = _free_ports(2)
  model_dir = tmp_path / "run"
  workers = []
  for index in range(2):
    env = dict(os.environ, TF_CONFIG=json.dumps({
        "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]}, "task": {"type": "worker", "index": index}}))
    command = [sys.executable, str(PROJECT_ROOT / "train.py"), f"--musdb_root={toy_root}", f"--model_dir={model_dir}",
               f"--cache_dir={tmp_path}/cache_{index}", *TINY, "--strategy=multi_worker", "--max_steps=4",
               "--nofine_tune"]
    workers.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    env=env, cwd=PROJECT_ROOT))
  outputs = [w.communicate(timeout=300) for w in workers]
  for worker, (_, err) in zip(workers, outputs):
    assert worker.returncode == 0, err[-3000:]
  summaries = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
  assert [s["step"] for s in summaries] == [4, 4]
  assert latest_checkpoint(model_dir / "checkpoints")[1] == 4
  assert (model_dir / "logs" / "train").is_dir()
  # The second worker's checkpoints went to its scratch folder, never over the chief's.
  assert not (model_dir / ".worker_1" / "logs").exists()


def test_settings_flags_come_from_the_settings_fields_with_their_defaults():
  import dataclasses
  from absl import flags
  from wave_unet_tf.training import settings

  values = flags.FlagValues()
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(flags, "FLAGS", values)
    original = (flags.DEFINE_enum, flags.DEFINE_boolean, flags.DEFINE_integer, flags.DEFINE_string)
    for define in original:
      patch.setattr(flags, define.__name__, lambda *a, _define=define, **k: _define(*a, flag_values=values, **k))
    settings.define_flags()
  values(["train", "--seed=4", "--split_mode=random"])
  data, run = settings.from_flags(values)
  assert run.seed == 4 and data.split_mode == "random"
  for cls in settings.SETTINGS:
    for field in dataclasses.fields(cls):
      assert values[field.name].default == field.default, field.name


def test_resuming_checks_only_the_settings_that_change_results(tmp_path):
  from wave_unet_tf.training import settings

  data, run = settings.DataOptions(musdb_root="a"), settings.RunOptions()
  assert not settings.check_resumable(str(tmp_path), data, run)
  settings.save(str(tmp_path), data, run)
  assert settings.check_resumable(str(tmp_path), settings.DataOptions(musdb_root="moved"),
                                  settings.RunOptions(max_steps=9, checkpoint_every=1, summary_every=2))
  with pytest.raises(settings.SettingsChangedError, match=r"--mixed_precision: 'none' -> 'mixed_float16'; "
                                                          r"--seed: 0 -> 1"):
    settings.check_resumable(str(tmp_path), data, settings.RunOptions(seed=1, mixed_precision="mixed_float16"))
  with pytest.raises(settings.SettingsChangedError, match=r"--remix: False -> True"):
    settings.check_resumable(str(tmp_path), settings.DataOptions(musdb_root="a", remix=True), run)
