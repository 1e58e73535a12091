"""Training under faults: damaged checkpoints and best.keras, a busy run folder, kills at random moments, a full
disk. The checkpoint folder and the lock in-process, then the real command in subprocesses."""

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

from conftest import PROJECT_ROOT, assert_quiet, fill_disk, small_disk
from test_training import TINY, summary_of, train
from wave_unet_tf.training import checkpoints, lock


def command(toy_root, model_dir, *extra):
  """The command line `train` runs, for a process started in the background."""
  return [sys.executable, str(PROJECT_ROOT / "train.py"), f"--musdb_root={toy_root}", f"--model_dir={model_dir}",
          f"--cache_dir={model_dir}/../cache", *TINY, *extra]


def truncate(path, size=100):
  with open(path, "r+b") as f:
    f.truncate(size)


def flip_byte(path, offset):
  with open(path, "r+b") as f:
    f.seek(offset)
    byte = f.read(1)
    f.seek(offset)
    f.write(bytes([byte[0] ^ 0xFF]))


def listed(folder):
  """The checkpoints on disk, oldest first, without their suffix."""
  return [os.path.basename(p)[:-len(checkpoints.SUFFIX)] for p in checkpoints.CheckpointFolder(str(folder)).listed()]


def assert_no_partial_files(model_dir):
  """No temporary name left, and every checkpoint file on disk reads in full."""
  for root, folders, files in os.walk(model_dir):
    for name in folders + files:
      assert not re.search(r"_temp$|\.tmp|^\.tmp-", name), os.path.join(root, name)
  for folder in ("checkpoints", "best"):
    path = os.path.join(model_dir, folder)
    if os.path.isdir(path):
      assert all(re.fullmatch(r"ckpt-\d+\.npz", name) for name in os.listdir(path)), os.listdir(path)
      for checkpoint in checkpoints.CheckpointFolder(path).listed():
        checkpoints.read(checkpoint)  # reads every byte and checks every CRC-32


def model_weights(path):
  from wave_unet_tf.model.saving import load_keras_model
  return load_keras_model(str(path)).get_weights()


# -- the checkpoint folder, in-process ----------------------------------------------------------------------------


def save_steps(folder, numbers, size=1000):
  for number in numbers:
    folder.save(number, {"values": np.full(size, number, np.float32)}, {"counters": {"step": number}})


def restored(folder):
  """``(path, step, values)`` of what ``folder.restore`` reads."""
  found = {}
  path = folder.restore(lambda path, arrays, info: found.update(arrays, **info["counters"]))
  return path, found.get("step"), found.get("values")


def test_a_damaged_latest_checkpoint_falls_back_and_leaves_the_rotation(tmp_path, capsys):
  folder = checkpoints.CheckpointFolder(str(tmp_path))
  save_steps(folder, [1, 2, 3])
  assert listed(tmp_path) == ["ckpt-2", "ckpt-3"]
  truncate(tmp_path / "ckpt-3.npz")
  path, step, values = restored(checkpoints.CheckpointFolder(str(tmp_path)))
  assert path == str(tmp_path / "ckpt-2.npz") and step == 2 and np.all(values == 2)
  said = capsys.readouterr().err
  assert f"{tmp_path}/ckpt-3.npz (BadZipFile: File is not a zip file) is damaged; resuming from " \
         f"{tmp_path}/ckpt-2.npz (step 2)" in said and len(said.strip().splitlines()) == 1
  # The damaged checkpoint is gone: the next save rotates it out, not the good one.
  assert listed(tmp_path) == ["ckpt-2"]
  save_steps(folder, [3])
  assert listed(tmp_path) == ["ckpt-2", "ckpt-3"]


def test_a_flipped_bit_is_found_by_the_crc(tmp_path, capsys):
  folder = checkpoints.CheckpointFolder(str(tmp_path))
  save_steps(folder, [1, 2], size=100_000)
  flip_byte(tmp_path / "ckpt-2.npz", 200_000)
  assert restored(folder)[1] == 1
  assert f"{tmp_path}/ckpt-2.npz (BadZipFile: Bad CRC-32 for file 'values.npy') is damaged" in capsys.readouterr().err


def test_a_folder_of_damaged_checkpoints_is_a_one_line_error_naming_them(tmp_path):
  save_steps(checkpoints.CheckpointFolder(str(tmp_path)), [1, 2])
  truncate(tmp_path / "ckpt-1.npz", 10)
  truncate(tmp_path / "ckpt-2.npz", 2000)
  with pytest.raises(checkpoints.NoReadableCheckpointError) as error:
    restored(checkpoints.CheckpointFolder(str(tmp_path)))
  message = str(error.value)
  assert "\n" not in message and isinstance(error.value, ValueError)
  assert f"{tmp_path}/ckpt-2.npz (BadZipFile" in message and f"{tmp_path}/ckpt-1.npz (BadZipFile" in message
  assert listed(tmp_path) == ["ckpt-1", "ckpt-2"]  # nothing deleted: the user decides


def test_a_checkpoint_of_another_model_is_a_one_line_error(tmp_path):
  import wave_unet_tf as wut
  small = wut.build_model(wut.get_preset("M5").replace(num_layers=3, num_initial_filters=4, num_channels=1))
  other = wut.build_model(wut.get_preset("M5").replace(num_layers=3, num_initial_filters=6, num_channels=1))
  folder = checkpoints.CheckpointFolder(str(tmp_path))
  folder.save(1, *checkpoints.snapshot(small, counters={"step": 1}))
  with pytest.raises(checkpoints.CheckpointMismatchError, match=r"ckpt-1.npz: down_conv_0/kernel has shape "):
    folder.restore(lambda path, arrays, info: checkpoints.assign(path, arrays, info, other))


PAGE = 4096


@pytest.mark.parametrize("fits", ["nothing", "half of it"])
def test_a_save_on_a_full_disk_keeps_the_previous_checkpoint_and_leaves_nothing_partial(tmp_path, fits):
  with small_disk(tmp_path / "disk", 2048) as disk:
    folder = checkpoints.CheckpointFolder(str(disk / "checkpoints"))
    save_steps(folder, [1], size=100_000)
    size = os.path.getsize(disk / "checkpoints" / "ckpt-1.npz")
    filler = fill_disk(disk, 0 if fits == "nothing" else size // 2)
    with pytest.raises(checkpoints.SaveError, match=r"cannot write checkpoint .*/ckpt-2.npz: no space left on "
                                                    r"device \(free some and run the same command to resume\); "
                                                    r".*/ckpt-1.npz \(step 1\) is kept"):
      save_steps(folder, [2], size=100_000)
    assert sorted(os.listdir(disk / "checkpoints")) == ["ckpt-1.npz"]
    os.remove(filler)
    assert restored(checkpoints.CheckpointFolder(str(disk / "checkpoints")))[1] == 1


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
  truncate(model_dir / "checkpoints" / "ckpt-8.npz")
  truncate(model_dir / "best.keras", 500)

  result = train(toy_root, model_dir, "--nofine_tune", "--max_steps=10")
  assert_quiet(result.stdout, result.stderr)
  assert f"train.py: {model_dir}/checkpoints/ckpt-8.npz (BadZipFile: File is not a zip file) is damaged; " \
         f"resuming from {model_dir}/checkpoints/ckpt-6.npz (step 6)" in result.stderr
  assert f"train.py: {model_dir}/best.keras is damaged (it does not load as a Keras model); rebuilt from " \
         f"{model_dir}/best/ckpt-6.npz" in result.stderr
  assert summary_of(result)["step"] == 10
  for best, rebuilt in zip(best_weights, model_weights(model_dir / "best.keras")):
    np.testing.assert_array_equal(best, rebuilt)
  assert listed(model_dir / "checkpoints") == ["ckpt-9", "ckpt-10"]
  assert_no_partial_files(model_dir)

  for name in listed(model_dir / "checkpoints"):
    truncate(model_dir / "checkpoints" / f"{name}.npz")
  result = train(toy_root, model_dir, "--nofine_tune", "--max_steps=12", check=False)
  assert result.returncode == 1 and "Traceback" not in result.stderr
  message = result.stderr.strip().splitlines()[-1]
  assert message.startswith(f"train.py: error: no readable checkpoint in {model_dir}/checkpoints: ")
  assert "ckpt-10.npz (BadZipFile" in message and "ckpt-9.npz (BadZipFile" in message


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
    latest = checkpoints.CheckpointFolder(str(checkpoint_dir)).latest
    return checkpoints.number(latest) if latest else 0

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
# checkpoints/ckpt-6, then checkpoints/ckpt-9 (about 107 kB, 91 kB, 107 kB, 107 kB for this tiny model).
@pytest.mark.slow
@pytest.mark.parametrize("free_kb,failing", [(40, "checkpoint {run}/best/ckpt-6.npz"), (150, "{run}/best.keras"),
                                             (250, "checkpoint {run}/checkpoints/ckpt-9.npz")])
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
