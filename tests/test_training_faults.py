"""Training under faults: damaged checkpoints and best.keras, a busy run folder, kills at random moments, a full
disk. The checkpoint folder and the lock in-process, then the real command in subprocesses."""

import math
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from conftest import PROJECT_ROOT, assert_quiet, fill_disk, small_disk
from test_training import TINY, summary_of, train
from wave_unet_tf.training import checkpoints, lock

STEP_KEY = "step/.ATTRIBUTES/VARIABLE_VALUE"


def command(toy_root, model_dir, *extra):
  """The command line `train` runs, for a process started in the background."""
  return [sys.executable, str(PROJECT_ROOT / "train.py"), f"--musdb_root={toy_root}", f"--model_dir={model_dir}",
          f"--cache_dir={model_dir}/../cache", *TINY, *extra]


def truncate(path, size=100):
  with open(path, "r+b") as f:
    f.truncate(size)


def listed(folder):
  """The checkpoints the state file names, oldest first."""
  state = tf.train.get_checkpoint_state(str(folder))
  return [os.path.basename(p) for p in state.all_model_checkpoint_paths] if state else []


def assert_no_partial_files(model_dir):
  """No temporary name left, and every checkpoint file on disk belongs to a listed checkpoint that reads."""
  for root, folders, files in os.walk(model_dir):
    for name in folders + files:
      assert not re.search(r"_temp$|\.tmp|^\.tmp-", name), os.path.join(root, name)
  for folder in ("checkpoints", "best"):
    path = os.path.join(model_dir, folder)
    if not os.path.isdir(path):
      continue
    names = listed(path)
    on_disk = {re.sub(r"\.(index|data-.*)$", "", f) for f in os.listdir(path) if f.startswith("ckpt-")}
    assert on_disk == set(names), (folder, on_disk, names)
    for name in names:
      reader = tf.train.load_checkpoint(os.path.join(path, name))
      for key in reader.get_variable_to_shape_map():
        reader.get_tensor(key)  # reads every byte: a truncated or half-written file raises


def model_weights(path):
  from wave_unet_tf.model.saving import load_keras_model
  return load_keras_model(str(path)).get_weights()


# -- the checkpoint folder, in-process ----------------------------------------------------------------------------


def counters(size=1000):
  values = tf.Variable(np.zeros(size, np.float32))
  step = tf.Variable(0, dtype=tf.int64)
  return values, step, tf.train.Checkpoint(values=values, step=step)


def save_steps(folder, values, step, numbers):
  for number in numbers:
    values.assign(np.full(values.shape, number, np.float32))
    step.assign(number)
    folder.save(number)


def test_a_damaged_latest_checkpoint_falls_back_and_leaves_the_rotation(tmp_path, capsys):
  values, step, checkpoint = counters()
  save_steps(checkpoints.CheckpointFolder(checkpoint, str(tmp_path)), values, step, [1, 2, 3])
  truncate(tmp_path / "ckpt-3.data-00000-of-00001")
  values.assign(np.zeros(values.shape, np.float32))
  folder = checkpoints.CheckpointFolder(checkpoint, str(tmp_path))
  assert folder.restore() == str(tmp_path / "ckpt-2")
  assert int(step) == 2 and np.all(values.numpy() == 2)
  said = capsys.readouterr().err
  assert f"{tmp_path}/ckpt-3.data-00000-of-00001 (IndexError: Read less bytes than requested) is damaged; " \
         f"resuming from {tmp_path}/ckpt-2 (step 2)" in said
  # The damaged checkpoint is gone from the bookkeeping: the next save rotates it out, not the good one.
  assert listed(tmp_path) == ["ckpt-2"] and not (tmp_path / "ckpt-3.index").exists()
  save_steps(folder, values, step, [3])
  assert listed(tmp_path) == ["ckpt-2", "ckpt-3"]


def test_a_folder_of_damaged_checkpoints_is_a_one_line_error_naming_them(tmp_path):
  values, step, checkpoint = counters()
  save_steps(checkpoints.CheckpointFolder(checkpoint, str(tmp_path)), values, step, [1, 2])
  truncate(tmp_path / "ckpt-1.index", 10)
  truncate(tmp_path / "ckpt-2.data-00000-of-00001")
  with pytest.raises(checkpoints.NoReadableCheckpointError) as error:
    checkpoints.CheckpointFolder(checkpoint, str(tmp_path)).restore()
  message = str(error.value)
  assert "\n" not in message and isinstance(error.value, ValueError)
  assert f"{tmp_path}/ckpt-2.data-00000-of-00001 (IndexError" in message and f"{tmp_path}/ckpt-1.index (" in message
  assert listed(tmp_path) == ["ckpt-1", "ckpt-2"]  # nothing deleted: the user decides


def test_a_lost_state_file_is_rebuilt_from_the_checkpoints_on_disk(tmp_path):
  values, step, checkpoint = counters()
  save_steps(checkpoints.CheckpointFolder(checkpoint, str(tmp_path)), values, step, [4, 8])
  (tmp_path / "checkpoint").write_text("garbage {")
  folder = checkpoints.CheckpointFolder(checkpoint, str(tmp_path))
  assert folder.restore() == str(tmp_path / "ckpt-8") and int(step) == 8
  save_steps(folder, values, step, [9])
  assert listed(tmp_path) == ["ckpt-8", "ckpt-9"] and not (tmp_path / "ckpt-4.index").exists()


PAGE = 4096


@pytest.mark.parametrize("fits,failed_op", [
    ("nothing", "SaveV2"),  # the data file does not fit
    ("the data", "MergeV2Checkpoints")])  # it does (in its temporary folder), the final index does not
def test_a_save_on_a_full_disk_keeps_the_previous_checkpoint_and_leaves_nothing_partial(tmp_path, fits, failed_op,
                                                                                      monkeypatch):
  values, step, checkpoint = counters(100_000)
  with small_disk(tmp_path / "disk", 2048) as disk:
    folder = checkpoints.CheckpointFolder(checkpoint, str(disk / "checkpoints"))
    save_steps(folder, values, step, [1])
    data_pages = math.ceil(os.path.getsize(disk / "checkpoints" / "ckpt-1.data-00000-of-00001") / PAGE)
    filler = fill_disk(disk, 0 if fits == "nothing" else (data_pages + 1) * PAGE)  # tmpfs counts whole pages
    failures = []
    real_save = folder.manager.save
    monkeypatch.setattr(folder.manager, "save", lambda **kw: _recording(real_save, failures, **kw))
    with pytest.raises(checkpoints.SaveError, match=r"cannot write checkpoint .*/ckpt-2: no space left on device "
                                                    r"\(free some and run the same command to resume\); "
                                                    r".*/ckpt-1 \(step 1\) is kept"):
      save_steps(folder, values, step, [2])
    assert failed_op in failures[0]
    assert sorted(os.listdir(disk / "checkpoints")) == ["checkpoint", "ckpt-1.data-00000-of-00001", "ckpt-1.index"]
    assert listed(disk / "checkpoints") == ["ckpt-1"]
    os.remove(filler)
    step.assign(0)
    assert checkpoints.CheckpointFolder(checkpoint, str(disk / "checkpoints")).restore() and int(step) == 1


def _recording(save, failures, **kwargs):
  try:
    return save(**kwargs)
  except tf.errors.OpError as e:
    failures.append(str(e))
    raise


def test_a_best_model_on_a_full_disk_keeps_the_previous_one(tmp_path):
  import wave_unet_tf as wut
  model = wut.build_model(wut.get_preset("M5").replace(num_layers=3, num_initial_filters=4, num_channels=1))
  with small_disk(tmp_path / "disk", 1024) as disk:
    path = str(disk / "best.keras")
    checkpoints.save_best_model(model, path)
    before = model_weights(path)
    model.set_weights([w + 1 for w in model.get_weights()])
    fill_disk(disk, 8 * PAGE)
    with pytest.raises(checkpoints.SaveError, match=r"cannot write .*best.keras: no space left on device .*; the "
                                                    r"previous best.keras is kept"):
      checkpoints.save_best_model(model, path)
    assert sorted(os.listdir(disk)) == ["best.keras", "filler"]
    for old, kept in zip(before, model_weights(path)):
      np.testing.assert_array_equal(old, kept)


# -- the lock, in-process -------------------------------------------------------------------------------------------

HOLDER = "import sys, time\nfrom wave_unet_tf.training import lock\nwith lock.hold(sys.argv[1]):\n" \
         "  print('held', flush=True)\n  time.sleep(60)\n"


def test_a_held_folder_is_refused_naming_the_holder_and_a_killed_holder_does_not_block(tmp_path):
  holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                            cwd=PROJECT_ROOT)
  try:
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(lock.BusyFolderError) as error:
      with lock.hold(str(tmp_path)):
        pass
    message = str(error.value)
    assert f"is in use by another training run (PID {holder.pid} on host {socket.gethostname()}, since " in message
    assert re.search(r"since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", message) and "\n" not in message
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  assert (tmp_path / lock.LOCK_FILE).exists()  # left behind by the kill, but the kernel dropped the lock
  with lock.hold(str(tmp_path)) as path:
    assert f"pid={os.getpid()}" in open(path).read()
  assert not (tmp_path / lock.LOCK_FILE).exists()


# -- the real command ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_run_resumes_past_a_damaged_checkpoint_and_rebuilds_a_damaged_best_model(toy_root, tmp_path):
  model_dir = tmp_path / "run"
  train(toy_root, model_dir, "--nofine_tune", "--max_steps=8")  # checkpoints 6 and 8, best 6
  assert listed(model_dir / "checkpoints") == ["ckpt-6", "ckpt-8"] and listed(model_dir / "best") == ["ckpt-6"]
  best_weights = model_weights(model_dir / "best.keras")
  truncate(model_dir / "checkpoints" / "ckpt-8.data-00000-of-00001")
  truncate(model_dir / "best.keras", 500)

  result = train(toy_root, model_dir, "--nofine_tune", "--max_steps=10")
  assert_quiet(result.stdout, result.stderr)
  assert f"train.py: {model_dir}/checkpoints/ckpt-8.data-00000-of-00001 (IndexError: Read less bytes than " \
         f"requested) is damaged; resuming from {model_dir}/checkpoints/ckpt-6 (step 6)" in result.stderr
  assert f"train.py: {model_dir}/best.keras is damaged (it does not load as a Keras model); rebuilt from " \
         f"{model_dir}/best/ckpt-6" in result.stderr
  assert summary_of(result)["step"] == 10
  for best, rebuilt in zip(best_weights, model_weights(model_dir / "best.keras")):
    np.testing.assert_array_equal(best, rebuilt)
  assert listed(model_dir / "checkpoints") == ["ckpt-9", "ckpt-10"]
  assert_no_partial_files(model_dir)

  for name in listed(model_dir / "checkpoints"):
    truncate(model_dir / "checkpoints" / f"{name}.data-00000-of-00001")
  result = train(toy_root, model_dir, "--nofine_tune", "--max_steps=12", check=False)
  assert result.returncode == 1 and "Traceback" not in result.stderr
  message = result.stderr.strip().splitlines()[-1]
  assert message.startswith(f"train.py: error: no readable checkpoint in {model_dir}/checkpoints: ")
  assert "ckpt-10.data-00000-of-00001 (IndexError" in message and "ckpt-9.data-00000-of-00001 (IndexError" in message


def wait_for(condition, seconds, what):
  deadline = time.time() + seconds
  while not condition():
    if time.time() > deadline:
      raise AssertionError(f"timed out waiting for {what}")
    time.sleep(0.1)


@pytest.mark.slow
def test_a_second_run_in_a_busy_folder_is_refused_and_a_killed_runs_lock_does_not_block(toy_root, tmp_path):
  model_dir = tmp_path / "run"
  long_run = ["--nofine_tune", "--max_steps=1000000", "--max_epochs=100000", "--patience=100000"]
  first = subprocess.Popen(command(toy_root, model_dir, *long_run), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, cwd=PROJECT_ROOT)
  try:
    lock_file = model_dir / lock.LOCK_FILE
    wait_for(lambda: lock_file.exists() and "since=" in lock_file.read_text(), 120, "the first run's lock")
    second = train(toy_root, model_dir, "--max_steps=1", check=False)
    assert second.returncode == 1 and "Traceback" not in second.stderr
    assert re.fullmatch(rf"train\.py: error: --model_dir={model_dir} is in use by another training run \(PID "
                        rf"{first.pid} on host {re.escape(socket.gethostname())}, since \S+; {lock_file}\); wait for "
                        r"it to end or stop it, or use another --model_dir", second.stderr.strip().splitlines()[-1])
    assert first.poll() is None  # the refused run left the first alone
  finally:
    first.send_signal(signal.SIGKILL)
    first.wait()
  assert f"pid={first.pid}" in lock_file.read_text()  # stale, but not locked
  result = train(toy_root, model_dir, *long_run, "--max_steps=1")
  assert summary_of(result)["step"] >= 1 and not lock_file.exists()


@pytest.mark.slow
def test_kills_at_random_moments_never_lose_more_than_one_checkpoint_interval(toy_root, tmp_path):
  model_dir = tmp_path / "run"
  interval, max_steps = 5, 150
  args = ["--nofine_tune", "--max_epochs=1000", "--patience=1000", "--steps_per_epoch=20",
          f"--checkpoint_every={interval}", f"--max_steps={max_steps}"]
  intervals = random.Random(1234)
  checkpoint_dir = model_dir / "checkpoints"

  def latest_step():
    latest = tf.train.latest_checkpoint(str(checkpoint_dir)) if checkpoint_dir.exists() else None
    return int(latest.rsplit("-", 1)[1]) if latest else 0

  def resumed_step(output):
    found = re.search(r"resuming \S+ at step (\d+)", output)
    return int(found.group(1)) if found else 0

  saved_before_kill = 0
  for round_ in range(3):
    log = tmp_path / f"round{round_}.out"
    with open(log, "w") as out:
      process = subprocess.Popen(command(toy_root, model_dir, *args), stdout=out, stderr=subprocess.STDOUT,
                                 cwd=PROJECT_ROOT)
    try:
      # Killed as it saves its first, second or third checkpoint past where it resumed (seeded): events, not
      # moments, so the kills land alike on any machine, each with over 100 steps still to go.
      target = saved_before_kill + interval * intervals.randint(1, 3)
      wait_for(lambda: latest_step() >= target or process.poll() is not None, 240, f"checkpoint {target}")
      assert process.poll() is None, "the run ended before its kill"
    finally:
      process.send_signal(signal.SIGKILL)
      process.wait()
    assert resumed_step(log.read_text()) >= saved_before_kill - interval, log.read_text()[-2000:]
    saved_before_kill = latest_step()
  result = train(toy_root, model_dir, *args)
  assert 0 < resumed_step(result.stdout) and resumed_step(result.stdout) >= saved_before_kill - interval
  assert summary_of(result)["step"] == max_steps
  assert_no_partial_files(model_dir)


@pytest.fixture(scope="module")
def run_at_step_3(toy_root, tmp_path_factory):
  """A run stopped at step 3 (checkpoint 3 and a stand-in best.keras), to copy onto a small disk."""
  folder = tmp_path_factory.mktemp("base")
  train(toy_root, folder / "run", "--nofine_tune", "--max_steps=3", f"--cache_dir={folder}/cache")
  return folder


# Free space left on the disk for the next run; its epoch end at step 6 writes best/ckpt-6, best.keras and
# checkpoints/ckpt-6, then checkpoints/ckpt-9 (about 104 kB, 91 kB, 104 kB, 104 kB for this tiny model).
@pytest.mark.slow
@pytest.mark.parametrize("free_kb,failing", [(40, "checkpoint {run}/best/ckpt-6"), (150, "{run}/best.keras"),
                                             (250, "checkpoint {run}/checkpoints/ckpt-9")])
def test_a_full_disk_stops_training_with_one_line_and_the_same_command_resumes(toy_root, run_at_step_3, tmp_path,
                                                                              free_kb, failing):
  with small_disk(tmp_path / "disk", 1024) as disk:
    model_dir = disk / "run"
    shutil.copytree(run_at_step_3 / "run", model_dir)
    filler = fill_disk(disk, free_kb * 1024)
    # Decoded tracks stay off the small disk.
    args = ["--nofine_tune", "--max_steps=12", f"--cache_dir={run_at_step_3}/cache"]
    result = train(toy_root, model_dir, *args, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"train.py: error: cannot write {failing.format(run=model_dir)}: no space left on device (free some and run "
        f"the same command to resume); ")
    assert_no_partial_files(model_dir)
    assert listed(model_dir / "checkpoints")[0] == "ckpt-3"
    model_weights(model_dir / "best.keras")  # the previous one still loads

    os.remove(filler)
    summary = summary_of(train(toy_root, model_dir, *args))
    assert summary["finished"] and summary["step"] == 12
    assert_no_partial_files(model_dir)
