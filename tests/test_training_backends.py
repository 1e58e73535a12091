"""Training on JAX and PyTorch: the original's training steps, mixed precision, JAX's data parallelism, a run
that moves between backends through its checkpoints, and the fault guarantees under JAX. Each backend runs in a
child process (tests/backends.py); the checks are grouped so that few children start."""

import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

from backends import environment, run_python, skip_unless_installed
from conftest import ORIGINAL_TF1, PROJECT_ROOT, assert_quiet, fill_disk, small_disk
from test_training import TINY, summary_of
from test_training_faults import assert_no_partial_files, listed, truncate, wait_for
from wave_unet_tf.training import checkpoints

FIXTURE = "tiny_m5"

STEPS = """
import json, sys
import numpy as np
import keras
import wave_unet_tf as wut
from wave_unet_tf.config import Config
from wave_unet_tf.training.step import make_optimizer, make_train_step, per_example_loss

folder, given, out = sys.argv[1:4]
config = Config.from_json_file(folder + "/config.json")
given = np.load(given)
results = {}

def weights(model):
  return {w.path: keras.ops.convert_to_numpy(w) for w in model.weights}

# The original's three steps from its checkpoint's weights.
model = wut.build_model(config)
model.set_weights([given[f"weight_{i}"] for i in range(len(model.weights))])
mix, targets = given["mix"], {s: given[f"target_{s}"] for s in config.source_names}
step = make_train_step(model, make_optimizer(config), None, global_batch_size=2, jit_compile=True)
results["losses"] = [float(step((mix, targets))) for _ in range(3)]
step.sync()
results["final"] = float(np.mean(keras.ops.convert_to_numpy(
    per_example_loss(targets, model(mix, training=True), config.source_names))))
np.savez(out, **weights(model))

# Mixed precision: bf16 compute, float32 weights and outputs; float16 with its loss scale.
tiny = config.replace(num_layers=3, num_initial_filters=4)
frames, out_frames = wut.io_sizes(tiny)
rng = np.random.default_rng(0)
batch = (rng.uniform(-0.5, 0.5, (2, frames, tiny.num_channels)).astype("float32"),
         {s: rng.uniform(-0.5, 0.5, (2, out_frames, tiny.num_channels)).astype("float32") for s in tiny.source_names})
for policy in ("mixed_bfloat16", "mixed_float16"):
  keras.mixed_precision.set_global_policy(policy)
  model = wut.build_model(tiny)
  before = weights(model)
  step = make_train_step(model, make_optimizer(tiny), None, global_batch_size=2, jit_compile=True)
  losses = [float(step(batch)) for _ in range(2)]
  step.sync()
  outputs = model(batch[0], training=False)
  results[policy] = {"losses": losses, "changed": any(not np.array_equal(before[k], v) for k, v in weights(model).items()),
                     "outputs": sorted({keras.backend.standardize_dtype(v.dtype) for v in outputs.values()}),
                     "compute": model.get_layer("down_conv_0").compute_dtype}
keras.mixed_precision.set_global_policy("float32")
results["tensorflow_imported"] = "tensorflow" in sys.modules  # what a GPU machine with JAX or PyTorch only lacks
print(json.dumps(results))
"""

DATA_PARALLEL = """
import json, sys
import numpy as np
import keras
import wave_unet_tf as wut
from wave_unet_tf.backends import training as backend
from wave_unet_tf.training.step import make_optimizer, make_train_step

config = wut.get_preset("M5").replace(num_layers=3, num_initial_filters=4, sample_rate=8000, num_frames=256)
frames, out_frames = wut.io_sizes(config)
rng = np.random.default_rng(1)
batches = [(rng.uniform(-0.5, 0.5, (4, frames, 2)).astype("float32"),
            {s: rng.uniform(-0.5, 0.5, (4, out_frames, 2)).astype("float32") for s in config.source_names})
           for _ in range(3)]
results = {}
for name in ("default", "mirrored"):
  devices = backend.make_devices(name)
  keras.utils.set_random_seed(0)
  with devices.scope():
    model = wut.build_model(config)
    optimizer = make_optimizer(config)
  step = make_train_step(model, optimizer, devices, global_batch_size=4, jit_compile=True)
  losses = [float(step(b)) for b in batches]
  step.sync()
  results[name] = {"replicas": devices.replicas, "losses": losses,
                   "shards": len(model.weights[0].value.sharding.device_set),
                   "weights": [keras.ops.convert_to_numpy(w).tolist() for w in model.weights]}
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def fixture_steps(tmp_path_factory):
  """The original's checkpoint converted (here, under TensorFlow) and its batch, for the children."""
  import wave_unet_tf as wut
  from wave_unet_tf.config import Config
  from wave_unet_tf.conversion.tf1_checkpoint import original_variables

  folder = ORIGINAL_TF1 / FIXTURE
  config = Config.from_dict(json.loads((folder / "config.json").read_text())["config"])
  model = wut.convert_tf1_checkpoint(str(folder), config)
  work = tmp_path_factory.mktemp("steps")
  (work / "config.json").write_text(config.to_json())
  targets = np.load(folder / "training" / "targets.npz")
  np.savez(work / "given.npz", mix=np.load(folder / "reference.npz")["input"],
           **{f"target_{s}": v for s, v in targets.items()},
           **{f"weight_{i}": w for i, w in enumerate(model.get_weights())})
  after = np.load(folder / "training" / "weights_after_3_steps.npz")
  expected = {keras_name: after[name] for name, _, keras_name in original_variables(config)}
  recorded = json.loads((folder / "training" / "train_steps.json").read_text())
  return work, expected, recorded


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_the_original_steps_and_mixed_precision_on_each_backend(backend, fixture_steps):
  work, expected, recorded = fixture_steps
  out = work / f"{backend}.npz"
  result = run_python(backend, STEPS, work, work / "given.npz", out)
  got = json.loads(result.stdout.strip().splitlines()[-1])
  np.testing.assert_allclose(got["losses"], recorded["loss_before_each_step"], atol=1e-5, rtol=0)
  assert got["final"] == pytest.approx(recorded["loss_after_3_steps"], abs=1e-5)
  assert not got["tensorflow_imported"]
  weights = np.load(out)
  for name, value in expected.items():
    np.testing.assert_allclose(weights[name], value, atol=1e-5, rtol=0, err_msg=name)
  for policy in ("mixed_bfloat16", "mixed_float16"):
    mixed = got[policy]
    assert all(np.isfinite(mixed["losses"])) and mixed["changed"], (policy, mixed)
    assert mixed["outputs"] == ["float32"] and mixed["compute"] == policy.split("_")[1], (policy, mixed)


@pytest.mark.slow
def test_jax_data_parallel_on_two_host_devices_matches_one_device_at_the_same_global_batch():
  result = run_python("jax", DATA_PARALLEL, XLA_FLAGS="--xla_force_host_platform_device_count=2")
  got = json.loads(result.stdout.strip().splitlines()[-1])
  assert got["mirrored"]["replicas"] == 2 and got["mirrored"]["shards"] == 2 and got["default"]["shards"] == 1
  np.testing.assert_allclose(got["mirrored"]["losses"], got["default"]["losses"], rtol=1e-5)
  for mirrored, default in zip(got["mirrored"]["weights"], got["default"]["weights"]):
    np.testing.assert_allclose(mirrored, default, rtol=1e-5, atol=1e-7)


# -- the command, across backends -----------------------------------------------------------------------------------


def train_on(backend, toy_root, model_dir, *extra, check=True, cache=None):
  """train.py under ``backend``."""
  skip_unless_installed(backend)
  command = [sys.executable, str(PROJECT_ROOT / "train.py"), f"--musdb_root={toy_root}", f"--model_dir={model_dir}",
             f"--cache_dir={cache or str(model_dir) + '/../cache'}", *TINY, *extra]
  result = subprocess.run(command, capture_output=True, text=True, env=environment(backend), cwd=PROJECT_ROOT)
  if check and result.returncode != 0:
    raise AssertionError(f"{backend}: {result.stderr[-3000:]}")
  return result


def assert_same_checkpoint(a, b, atol):
  arrays_a, info_a = checkpoints.read(a)
  arrays_b, info_b = checkpoints.read(b)
  assert info_a["counters"] == pytest.approx(info_b["counters"], abs=atol) and info_a["model"] == info_b["model"]
  for key in arrays_a:
    np.testing.assert_allclose(arrays_a[key], arrays_b[key], atol=atol, rtol=0, err_msg=key)


@pytest.mark.slow
def test_a_run_started_on_tensorflow_resumes_on_jax_as_on_tensorflow_then_on_torch(toy_root, tmp_path):
  moved, stayed = tmp_path / "moved", tmp_path / "stayed"
  args = ["--nofine_tune", "--max_epochs=3", "--patience=3"]
  train_on("tensorflow", toy_root, moved, *args, "--max_steps=4")
  shutil.copytree(moved, stayed)
  for backend, steps in (("jax", 8), ("torch", 12)):  # epochs end at steps 6 and 12: validation, best/
    result = train_on(backend, toy_root, moved, *args, f"--max_steps={steps}")
    assert_quiet(result.stdout, result.stderr)
    assert f"resuming {moved} at step {steps - 4}" in result.stdout + result.stderr
    summary = summary_of(result)
    assert summary["step"] == steps and summary["epoch"] == steps // 6
    if backend == "jax":  # the same data from the same step on: the same checkpoints as TensorFlow's
      train_on("tensorflow", toy_root, stayed, *args, f"--max_steps={steps}")
      for folder in ("checkpoints", "best"):
        assert listed(moved / folder) == listed(stayed / folder)
        assert_same_checkpoint(moved / folder / f"{listed(moved / folder)[-1]}.npz",
                               stayed / folder / f"{listed(stayed / folder)[-1]}.npz", atol=1e-5)
  assert listed(moved / "checkpoints") == ["ckpt-9", "ckpt-12"]  # --checkpoint_every=3
  assert checkpoints.read(moved / "checkpoints" / "ckpt-12.npz")[1]["backend"] == "torch"
  assert_no_partial_files(moved)


@pytest.mark.slow
def test_jax_keeps_the_guarantees_lock_kill_damaged_checkpoint_and_full_disk(toy_root, tmp_path):
  """One JAX run folder through the faults: a busy folder refused, SIGKILL, a damaged latest checkpoint,
  a full disk, each resumed by the same command."""
  model_dir = tmp_path / "run"
  long_run = ["--nofine_tune", "--max_epochs=1000", "--patience=1000", "--checkpoint_every=2"]
  first = subprocess.Popen([sys.executable, str(PROJECT_ROOT / "train.py"), f"--musdb_root={toy_root}",
                            f"--model_dir={model_dir}", f"--cache_dir={tmp_path}/cache", *TINY, *long_run],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment("jax"),
                           cwd=PROJECT_ROOT)
  try:
    wait_for(lambda: len(listed(model_dir / "checkpoints")) >= 2 or first.poll() is not None, 240, "two checkpoints")
    assert first.poll() is None, "the run ended before its kill"
    busy = train_on("jax", toy_root, model_dir, *long_run, "--max_steps=1", check=False, cache=tmp_path / "cache")
    assert busy.returncode == 1 and f"is in use by another training run (PID {first.pid}" in busy.stderr
  finally:
    first.send_signal(signal.SIGKILL)
    first.wait()
  killed_at = checkpoints.number(checkpoints.CheckpointFolder(str(model_dir / "checkpoints")).latest)
  before = listed(model_dir / "checkpoints")[-2]
  truncate(model_dir / "checkpoints" / f"ckpt-{killed_at}.npz")
  result = train_on("jax", toy_root, model_dir, *long_run, f"--max_steps={killed_at + 2}", cache=tmp_path / "cache")
  assert f"ckpt-{killed_at}.npz (BadZipFile: File is not a zip file) is damaged; resuming from " \
         f"{model_dir}/checkpoints/{before}.npz" in result.stderr
  assert summary_of(result)["step"] == killed_at + 2
  assert_no_partial_files(model_dir)

  with small_disk(tmp_path / "disk", 1024) as disk:
    shutil.copytree(model_dir, disk / "run")
    filler = fill_disk(disk, 40 * 1024)
    args = [*long_run, f"--max_steps={killed_at + 6}"]
    full = train_on("jax", toy_root, disk / "run", *args, check=False, cache=tmp_path / "cache")
    assert full.returncode == 1 and "Traceback" not in full.stderr
    assert "no space left on device (free some and run the same command to resume); " \
           in full.stderr.strip().splitlines()[-1]
    assert_no_partial_files(disk / "run")
    os.remove(filler)
    assert summary_of(train_on("jax", toy_root, disk / "run", *args, cache=tmp_path / "cache"))["step"] == killed_at + 6


LEGACY = """
import sys
from wave_unet_tf.config import Config
from wave_unet_tf.training import trainer as training
from wave_unet_tf.training.legacy import LegacyCheckpointError
config = Config.from_json_file(sys.argv[1] + "/config.json")
try:
  training.Trainer(config, sys.argv[1], training.DataOptions(musdb_root=sys.argv[2], cache_dir=sys.argv[3]))
except LegacyCheckpointError as e:
  print(e)
"""


@pytest.mark.slow
def test_a_run_folder_of_tensorflow_checkpoints_resumes_on_tensorflow_and_is_refused_elsewhere(toy_root, tmp_path):
  import keras
  import tensorflow as tf
  import wave_unet_tf as wut
  from wave_unet_tf.training import run_folder, trainer as training
  from wave_unet_tf.training.step import make_optimizer

  config = wut.get_preset("M5").replace(num_layers=3, num_initial_filters=4, sample_rate=8000, num_channels=1,
                                        num_frames=256, batch_size=2, steps_per_epoch=6)
  model_dir = tmp_path / "run"
  run_folder.prepare(str(model_dir), config)
  keras.utils.set_random_seed(5)
  model, optimizer = wut.build_model(config), make_optimizer(config)
  optimizer.build(model.trainable_variables)
  counters = dict(step=tf.Variable(4, dtype=tf.int64), epoch=tf.Variable(0, dtype=tf.int64),
                  best_loss=tf.Variable(np.inf, dtype=tf.float64))
  tf.train.CheckpointManager(tf.train.Checkpoint(model=model, optimizer=optimizer, **counters),
                             str(model_dir / "checkpoints"), max_to_keep=2).save(checkpoint_number=4)
  data = training.DataOptions(musdb_root=str(toy_root), cache_dir=str(tmp_path / "cache"), max_validation_batches=1)

  refused = run_python("jax", LEGACY, model_dir, toy_root, tmp_path / "cache").stdout.strip()
  assert refused == f"{model_dir}/checkpoints holds TensorFlow checkpoints of an earlier version of wave-unet-tf; " \
                    f"resume the run once with KERAS_BACKEND=tensorflow (it then saves checkpoints every backend " \
                    f"reads), or start a new --model_dir"

  t = training.Trainer(config, str(model_dir), data, training.RunOptions(max_steps=5))
  assert t.state.step == 4
  for restored, saved in zip(t.model.weights, model.weights):
    np.testing.assert_array_equal(restored.numpy(), saved.numpy())
  assert t.train()["step"] == 5 and listed(model_dir / "checkpoints") == ["ckpt-5"]
