"""Fine-tuning (--init_from, --freeze): warm start, what may change, freezing, resuming, own stems, strategies."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import ORIGINAL_TF1, PROJECT_ROOT, assert_quiet

# A model of tests/test_training.py's TINY size; the recipe fields are the source's, so a fine-tuning run
# inherits them (one epoch of 6 steps).
TINY = dict(num_layers=3, num_initial_filters=4, sample_rate=8000, num_channels=1, num_frames=256, batch_size=4,
            steps_per_epoch=6, max_epochs=1, patience=1, fine_tune=False)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
  """A tiny M5-style model with random weights, as a .keras file (what a finished run's best.keras is)."""
  import keras
  import wave_unet_tf as wut
  from wave_unet_tf.model.saving import save_model
  keras.utils.set_random_seed(11)
  path = tmp_path_factory.mktemp("source") / "source.keras"
  save_model(wut.build_model(wut.get_preset("M5").replace(**TINY)), str(path))
  return path


@pytest.fixture(scope="module")
def own_stems(tmp_path_factory):
  """A folder in MUSDB18-HQ layout with the stems speech.wav and noise.wav: three tracks, and one without
  noise.wav (skipped)."""
  from wave_unet_tf import audio
  root = tmp_path_factory.mktemp("own")
  rng = np.random.default_rng(3)
  rate, frames = 16000, 24000
  t = np.arange(frames) / rate
  for index in range(4):
    folder = root / "train" / f"speaker {index}"
    folder.mkdir(parents=True)
    speech = (0.3 * np.sin(2 * np.pi * (180 + 40 * index) * t) * (np.sin(2 * np.pi * 3 * t) > 0))[:, None]
    noise = 0.05 * rng.standard_normal((frames, 1))
    audio.save(str(folder / "speech.wav"), speech.astype(np.float32), rate)
    if index != 3:
      audio.save(str(folder / "noise.wav"), noise.astype(np.float32), rate)
    audio.save(str(folder / "mixture.wav"), (speech + noise).astype(np.float32), rate)
  return root


def load(path):
  from wave_unet_tf.model.saving import load_keras_model
  return load_keras_model(str(path))


def trainer(config, model_dir, root, **run):
  from wave_unet_tf.training import trainer as training
  data = training.DataOptions(musdb_root=str(root), cache_dir=str(model_dir) + ".cache", max_validation_batches=1)
  return training.Trainer(config, str(model_dir), data, training.RunOptions(**run))


def weights_of(model):
  return {w.path: np.array(w.numpy()) for w in model.weights}


def mix_for(config, seed=0):
  import wave_unet_tf as wut
  frames, _ = wut.io_sizes(config, config.num_frames)
  return np.random.default_rng(seed).uniform(-0.5, 0.5, (2, frames, config.num_channels)).astype(np.float32)


def train(root, model_dir, *flags, check=True):
  command = [sys.executable, str(PROJECT_ROOT / "train.py"), f"--musdb_root={root}", f"--model_dir={model_dir}",
             f"--cache_dir={model_dir}/../cache", "--max_validation_batches=1", "--checkpoint_every=2", *flags]
  result = subprocess.run(command, capture_output=True, text=True, cwd=PROJECT_ROOT)
  if check and result.returncode != 0:
    raise AssertionError(result.stderr[-3000:])
  return result


def source_forms(source, tmp_path):
  """Ways to name a trainable model: the .keras file, and a training run folder holding it."""
  run = tmp_path / "run_folder"
  run.mkdir()
  os.symlink(source, run / "best.keras")
  return {"keras": str(source), "run folder": str(run)}


def assert_warm_start(name, model, toy_root, model_dir, frames=None):
  """A run from ``name`` (which loads as ``model``) holds ``model``'s outputs before its first step."""
  from wave_unet_tf import model_cache
  config = model.wave_unet_config.replace(batch_size=2)  # a recipe field: free to change
  t = trainer(config, model_dir, toy_root, init_from=name)
  assert int(t.state.step) == 0 and float(t.state.best_loss) == np.inf and int(t.optimizer.iterations) == 0
  mix = mix_for(config.replace(num_frames=frames or config.num_frames))[:1]
  expected, got = model(mix, training=False), t.model(mix, training=False)
  for s in config.source_names:
    np.testing.assert_array_equal(got[s].numpy(), expected[s].numpy())
  saved = json.loads((model_dir / "run_settings.json").read_text())
  assert saved["init"] == {"source": name, "weights_sha256": model_cache.model_digest(model)}
  assert saved["run"]["init_from"] == name


@pytest.mark.parametrize("form", ["keras", "run folder"])
def test_warm_start_equals_the_source_before_the_first_step(source, toy_root, tmp_path, form):
  name = source_forms(source, tmp_path)[form]
  assert_warm_start(name, load(source), toy_root, tmp_path / "ft")


@pytest.mark.slow
def test_warm_start_from_an_original_tf1_checkpoint_folder_or_prefix(toy_root, tmp_path, monkeypatch):
  """The original's released layout (checkpoints/full_44KHz/full_44KHz-<step>.*, M5-HighSR's variables as in
  tests/fixtures/original_tf1's manifest): what the catalogue's M5-HighSR is made from."""
  import tensorflow as tf
  from wave_unet_tf import model_cache
  from wave_unet_tf.training import warm_start
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
  variables = json.loads((ORIGINAL_TF1 / "M5_full.variables.json").read_text())["variables"]
  rng = np.random.default_rng(0)
  folder = tmp_path / "checkpoints" / "full_44KHz"
  folder.mkdir(parents=True)
  tf.raw_ops.SaveV2(prefix=str(folder / "full_44KHz-236118"), tensor_names=[n for n, _ in variables],
                    shape_and_slices=[""] * len(variables),
                    tensors=[tf.constant(rng.normal(0, 0.05, shape).astype(np.float32) if shape else np.float32(1))
                             for _, shape in variables])
  model = warm_start.load_source(str(folder))
  assert model.wave_unet_config.sample_rate == 44100 and model.wave_unet_config.num_layers == 12
  assert model_cache.model_digest(warm_start.load_source(str(folder / "full_44KHz-236118"))) == \
      model_cache.model_digest(model)
  assert_warm_start(str(folder), model, toy_root, tmp_path / "ft", frames=16)


def test_shape_changes_are_refused_naming_each_field_and_both_values():
  import wave_unet_tf as wut
  from wave_unet_tf.training.warm_start import InitFromError, check_config
  source = wut.get_preset("M5-HighSR")
  changed = source.replace(num_layers=10, num_initial_filters=16, filter_size=9, merge_filter_size=3,
                           output_filter_size=3, num_channels=1, upsampling="linear", context=False,
                           num_frames=16384)
  with pytest.raises(InitFromError) as error:
    check_config(source, changed, "M5-HighSR")
  message = str(error.value)
  assert "\n" not in message and message.startswith("--init_from=M5-HighSR: cannot change")
  for part in ("num_layers: 12 -> 10", "num_initial_filters: 24 -> 16", "filter_size: 15 -> 9",
               "merge_filter_size: 5 -> 3", "output_filter_size: 1 -> 3", "num_channels: 2 -> 1",
               "upsampling: 'learned' -> 'linear'", "context: True -> False"):
    assert part in message
  # The recipe, the rate and the sources may change; the rate and sources are said.
  notices = check_config(source, source.replace(learning_rate=1e-5, batch_size=4, sample_rate=22050,
                                                source_names=("speech", "noise")), "M5-HighSR")
  assert len(notices) == 2
  assert "output convolution of speech starts fresh" in notices[0] and "22050 Hz" in notices[1]
  assert check_config(source, source.replace(learning_rate=1e-5, patience=3), "M5-HighSR") == []


@pytest.mark.slow
def test_a_refused_change_or_an_exported_model_is_one_line_and_leaves_no_run_folder(source, toy_root, tmp_path):
  result = train(toy_root, tmp_path / "ft", f"--init_from={source}", "--num_layers=4", "--num_initial_filters=8",
                 check=False)
  line = result.stderr.strip().splitlines()[-1]
  assert result.returncode == 1 and "Traceback" not in result.stderr
  assert "num_layers: 3 -> 4" in line and "num_initial_filters: 4 -> 8" in line and str(source) in line
  assert not (tmp_path / "ft").exists()

  from wave_unet_tf.training.warm_start import InitFromError, load_source
  saved_model = tmp_path / "exported"
  saved_model.mkdir()
  (saved_model / "saved_model.pb").write_bytes(b"")
  (tmp_path / "model.tflite").write_bytes(b"")
  for path, kind in ((saved_model, "a SavedModel"), (tmp_path / "model.tflite", "a .tflite file")):
    with pytest.raises(InitFromError, match=f"{kind} holds an inference graph, not a trainable Keras model"):
      load_source(str(path))
  with pytest.raises(InitFromError, match="--init_from=.*no_such.keras: no such file"):
    load_source(str(tmp_path / "no_such.keras"))


def test_new_source_names_start_only_their_output_convolutions_fresh(source, toy_root, tmp_path):
  import keras
  import wave_unet_tf as wut
  src = load(source)
  config = src.wave_unet_config.replace(source_names=("vocals", "accompaniment", "drums"))
  t = trainer(config, tmp_path / "ft", toy_root, init_from=str(source), seed=5)
  before, after = weights_of(src), weights_of(t.model)
  keras.utils.set_random_seed(5)
  fresh = weights_of(wut.build_model(config))  # what the seed gives a model from scratch
  assert set(after) - set(before) == {"outputs/vocals_conv/kernel", "outputs/vocals_conv/bias"}
  for path, value in after.items():
    # accompaniment's own convolution comes along; vocals (the source's residual) has none to take.
    np.testing.assert_array_equal(value, fresh[path] if path.startswith("outputs/vocals_conv") else before[path])


def test_frozen_weights_stay_bit_identical_while_the_rest_trains(source, toy_root, tmp_path):
  from wave_unet_tf.training.warm_start import InitFromError
  src = load(source)
  config = src.wave_unet_config.replace(learning_rate=1e-2)
  t = trainer(config, tmp_path / "ft", toy_root, init_from=str(source), freeze="down,bottleneck,interp_0",
              max_steps=3, jit_compile=False)
  assert t.train()["step"] == 3
  before, after = weights_of(src), weights_of(t.model)
  frozen = {p for p in before if p.startswith(("down_conv_", "bottleneck_conv/", "interp_0/"))}
  assert len(frozen) == 3 * 2 + 2 + 1
  for path in before:
    if path in frozen:
      np.testing.assert_array_equal(after[path], before[path])
    else:
      assert not np.array_equal(after[path], before[path]), f"{path} did not train"
  with pytest.raises(InitFromError, match=r"--freeze=down,middle: no part or layer 'middle'; valid: down, "
                                          r"bottleneck, up, outputs or a layer name \(bottleneck_conv, "):
    trainer(config, tmp_path / "other", toy_root, init_from=str(source), freeze="down,middle")
  assert not (tmp_path / "other").exists()


@pytest.mark.slow
def test_own_stems_train_new_sources_with_frozen_down_path_through_the_command(source, own_stems, tmp_path):
  model_dir = tmp_path / "ft"
  result = train(own_stems, model_dir, f"--init_from={source}", "--source_names=speech,noise", "--freeze=down",
                 "--max_steps=3")
  assert_quiet(result.stdout, result.stderr)
  lines = result.stderr.splitlines()
  assert any("the output convolution of speech starts fresh, every other layer from the model" in line
             for line in lines)
  skipped = [line for line in lines if "skipping track 'speaker 3'" in line]
  assert len(skipped) == 1 and "no stem for source 'noise'" in skipped[0]
  assert json.loads(result.stdout.strip().splitlines()[-1])["step"] == 3
  model, src = load(model_dir / "best.keras"), load(source)
  assert model.wave_unet_config.source_names == ("speech", "noise")
  for path, value in weights_of(model).items():
    if path.startswith("down_conv_"):
      np.testing.assert_array_equal(value, weights_of(src)[path])
  strict = train(own_stems, tmp_path / "strict", f"--init_from={source}", "--source_names=speech,noise",
                 "--max_steps=1", "--strict_data", check=False)
  assert strict.returncode == 1
  assert "speaker 3" in strict.stderr.strip().splitlines()[-1] and "--strict_data" in strict.stderr


@pytest.mark.slow
def test_a_killed_fine_tuning_run_resumes_its_own_checkpoints_not_the_source(source, toy_root, tmp_path):
  import shutil
  from wave_unet_tf.model_cache import model_digest
  from wave_unet_tf.training import checkpoints as checkpoint_files
  from wave_unet_tf.training.warm_start import load_source
  init = tmp_path / "init.keras"
  shutil.copy(source, init)
  digest = model_digest(load_source(str(init)))
  model_dir = tmp_path / "ft"
  flags = [f"--init_from={init}", "--max_epochs=50", "--patience=50", "--steps_per_epoch=40"]
  command = [sys.executable, str(PROJECT_ROOT / "train.py"), f"--musdb_root={toy_root}", f"--model_dir={model_dir}",
             f"--cache_dir={tmp_path}/cache", "--max_validation_batches=1", "--checkpoint_every=2", *flags]
  process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=PROJECT_ROOT)
  checkpoints = model_dir / "checkpoints"
  deadline = time.time() + 240  # a bound on a hung run, not the trigger: the trigger is the checkpoint
  try:
    while process.poll() is None and time.time() < deadline and not (
        checkpoints.exists() and any(f.endswith(".npz") for f in os.listdir(checkpoints))):
      time.sleep(0.2)
  finally:
    process.send_signal(signal.SIGKILL)
    process.wait()
  killed_at = checkpoint_files.number(checkpoint_files.CheckpointFolder(str(checkpoints)).latest)
  assert killed_at >= 2
  saved = json.loads((model_dir / "run_settings.json").read_text())
  assert saved["init"] == {"source": str(init), "weights_sha256": digest}

  init.unlink()  # the same command resumes without reading its source again
  result = train(toy_root, model_dir, *flags, f"--max_steps={killed_at + 2}", "--cache_dir", f"{tmp_path}/cache")
  assert f"resuming {model_dir} at step {killed_at}" in result.stderr + result.stdout
  assert "starting from --init_from" not in result.stderr + result.stdout
  assert json.loads(result.stdout.strip().splitlines()[-1])["step"] == killed_at + 2

  other = train(toy_root, model_dir, f"--init_from={source}", *flags[1:], check=False)
  line = other.stderr.strip().splitlines()[-1]
  assert other.returncode == 1 and f"--init_from: '{init}' -> '{source}'" in line


MIRRORED_SCRIPT = """
import json, sys
import numpy as np
from wave_unet_tf.training import strategy as strategies
strategies.split_cpu(2)
import tensorflow as tf
from wave_unet_tf.training import trainer as training, warm_start
source = sys.argv[1]
src = warm_start.load_source(source)
config = src.wave_unet_config.replace(batch_size=4, learning_rate=1e-3)
results = {}
for name in ("default", "mirrored"):
  strategy = strategies.make_strategy(name)
  data = training.DataOptions(musdb_root=sys.argv[2], cache_dir=sys.argv[3] + "/cache", max_validation_batches=1)
  t = training.Trainer(config, f"{sys.argv[3]}/{name}", data,
                       training.RunOptions(init_from=source, freeze="bottleneck", max_steps=2, jit_compile=False),
                       strategy)
  # Every replica holds the source's weights before the first step.
  for w, s in zip(t.model.weights, src.weights):
    for replica in strategy.experimental_local_results(w):
      np.testing.assert_array_equal(np.asarray(replica), s.numpy())
  results[name] = {"replicas": strategy.num_replicas_in_sync, "step": t.train()["step"],
                   "weights": [w.numpy().tolist() for w in t.model.weights]}
print(json.dumps(results))
"""


@pytest.mark.slow
def test_mirrored_fine_tuning_starts_every_replica_from_the_source_and_matches_one_device(source, toy_root,
                                                                                          tmp_path):
  out = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT, str(source), str(toy_root), str(tmp_path)],
                       capture_output=True, text=True, cwd=PROJECT_ROOT)
  assert out.returncode == 0, out.stderr[-3000:]
  results = json.loads(out.stdout.strip().splitlines()[-1])
  assert results["mirrored"]["replicas"] == 2 and results["default"]["replicas"] == 1
  assert results["mirrored"]["step"] == results["default"]["step"] == 2
  src = load(source)
  for mirrored, default, original, weight in zip(results["mirrored"]["weights"], results["default"]["weights"],
                                                 src.weights, src.weights):
    np.testing.assert_allclose(mirrored, default, rtol=1e-4, atol=1e-6)
    if weight.path.startswith("bottleneck_conv/"):
      np.testing.assert_array_equal(mirrored, original.numpy())


@pytest.mark.slow
def test_init_from_a_catalogue_name_fetches_the_release_once_and_fine_tunes_it(released_archive, toy_root, tmp_path,
                                                                            monkeypatch):
  """--init_from=M5-HighSR through --model_repo (a local copy of the release's models.zip): the run starts from
  the released checkpoint's converted weights and records the name and their digest."""
  archive, prefixes = released_archive
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
  model_dir = tmp_path / "run"
  result = train(toy_root, model_dir, "--init_from=M5-HighSR", f"--model_repo={archive}", "--batch_size=1",
                 "--num_frames=1024", "--max_steps=1", "--steps_per_epoch=1", "--max_validation_batches=1",
                 "--nojit_compile")
  assert "starting from --init_from=M5-HighSR" in result.stderr + result.stdout
  settings = json.loads((model_dir / "run_settings.json").read_text())
  assert settings["init"]["source"] == "M5-HighSR" and len(settings["init"]["weights_sha256"]) == 64
  import wave_unet_tf as wut
  config = json.loads((model_dir / "config.json").read_text())
  assert config["sample_rate"] == 44100 and config["upsampling"] == wut.get_preset("M5-HighSR").upsampling
