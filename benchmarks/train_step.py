r"""Milliseconds per training step of M5-HighSR (147443 -> 16389 samples, stereo) on any Keras backend.

    python benchmarks/train_step.py --backend=jax                  # float32 and bf16 at batch 16 and 64
    KERAS_BACKEND=torch python benchmarks/train_step.py --batch_sizes=16 --settings=float32
    python benchmarks/train_step.py --backend=jax --mode=pipeline  # the trainer's loop fed by tf.data vs the bare step

``--mode=step`` (default) times the backend's own training step (`wave_unet_tf.backends.training`: XLA-compiled
under TensorFlow and JAX, eager under PyTorch) on random data, one JSON line per setting (float32 or
mixed_bfloat16, and batch size), each in its own process, with the device named. Under JAX and PyTorch it
imports no TensorFlow (each line says so), so it runs on a GPU machine that has only JAX or PyTorch.
Figures go to ``benchmarks/results/train_step_<backend>.json``.

``--mode=pipeline`` (needs TensorFlow for tf.data) trains a smaller model at M5-HighSR's sizes (``--layers``,
``--filters``) so that the step is fast and the input pipeline matters: the examples/s of the bare step on
one batch held in memory, then of the trainer's own loop (`Trainer._run_steps`: tf.data batches of a toy
dataset, the loss checked, the progress bar and TensorBoard) -- ``fed_over_bare`` is their ratio (the median of
``--rounds`` alternating rounds).
Figures go to ``benchmarks/results/train_pipeline_<backend>.json``.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

flags.DEFINE_enum("backend", None, ["tensorflow", "jax", "torch"], "Keras backend (default: KERAS_BACKEND, else "
                  "tensorflow).")
flags.DEFINE_enum("mode", "step", ["step", "pipeline"], "Time the bare step, or the trainer's loop against it.")
flags.DEFINE_string("preset", "M5-HighSR", "Model preset.")
flags.DEFINE_list("batch_sizes", ["16", "64"], "Global batch sizes.")
flags.DEFINE_list("settings", ["float32", "mixed_bfloat16"], "Precision policies.")
flags.DEFINE_integer("steps", 5, "Timed steps per setting (after two warm-up steps).")
flags.DEFINE_boolean("jit_compile", True, "Compile the step (TensorFlow, JAX; PyTorch runs eagerly).")
flags.DEFINE_string("child", None, "Internal: run one 'setting,batch' in this process.")
flags.DEFINE_integer("layers", 6, "--mode=pipeline: the model's num_layers.")
flags.DEFINE_integer("filters", 8, "--mode=pipeline: the model's num_initial_filters.")
flags.DEFINE_integer("rounds", 3, "--mode=pipeline: alternating rounds of bare and fed steps (median).")
flags.DEFINE_boolean("save", True, "Keep the figures in benchmarks/results.")
FLAGS = flags.FLAGS


def device_name():
  """The device the backend computes on, in words."""
  import keras
  backend = keras.backend.backend()
  if backend == "jax":
    import jax
    device = jax.devices()[0]
    return f"{device.device_kind} ({device.platform}, {len(jax.devices())} device(s))"
  if backend == "torch":
    import torch
    return f"{torch.cuda.get_device_name()} (cuda)" if torch.cuda.is_available() else "CPU (torch)"
  import tensorflow as tf
  gpus = tf.config.list_physical_devices("GPU")
  return (tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU") + " (cuda)" if gpus
          else "CPU (tensorflow)")


def random_batch(config, batch_size, seed=0):
  import numpy as np
  import wave_unet_tf as wut
  input_frames, output_frames = wut.io_sizes(config)
  rng = np.random.default_rng(seed)
  mix = rng.uniform(-0.5, 0.5, (batch_size, input_frames, config.num_channels)).astype(np.float32)
  targets = {s: rng.uniform(-0.5, 0.5, (batch_size, output_frames, config.num_channels)).astype(np.float32)
             for s in config.source_names}
  return mix, targets


def bare_step(model, optimizer, batch_size):
  """The backend's training step on one device, and a batch for it as the backend takes it."""
  from wave_unet_tf.training.step import make_train_step
  return make_train_step(model, optimizer, None, batch_size, jit_compile=FLAGS.jit_compile)


def time_calls(call, count):
  times = []
  for _ in range(count):
    start = time.perf_counter()
    float(call())  # waits for the device
    times.append(time.perf_counter() - start)
  return times


def time_setting(setting, batch_size):
  import keras
  if setting != "float32":
    keras.mixed_precision.set_global_policy(setting)
  import wave_unet_tf as wut
  from wave_unet_tf.training.step import make_optimizer

  config = wut.get_preset(FLAGS.preset)
  model = wut.build_model(config)
  step = bare_step(model, make_optimizer(config), batch_size)
  batch = random_batch(config, batch_size)
  if keras.backend.backend() == "tensorflow":
    import tensorflow as tf
    batch = tf.nest.map_structure(tf.constant, batch)
  time_calls(lambda: step(batch), 2)  # compiles
  times = time_calls(lambda: step(batch), FLAGS.steps)
  best = min(times)
  row = {"backend": keras.backend.backend(), "device": device_name(), "preset": FLAGS.preset, "setting": setting,
         "batch_size": batch_size, "jit_compile": FLAGS.jit_compile and keras.backend.backend() != "torch",
         "ms_per_step_best": round(best * 1000, 2), "ms_per_step_median": round(statistics.median(times) * 1000, 2),
         "examples_per_s": round(batch_size / best, 2), "tensorflow_imported": "tensorflow" in sys.modules}
  print(json.dumps(row), flush=True)


def pipeline_mode(backend):
  """The trainer's loop, fed by tf.data from a toy dataset, against the bare step (same process, same model)."""
  import numpy as np
  import keras
  import wave_unet_tf as wut
  from wave_unet_tf.backends import training as backends_training
  from wave_unet_tf.data import toy
  from wave_unet_tf.training import trainer as training

  backends_training.keep_tensorflow_off_accelerators()
  batch_size = int(FLAGS.batch_sizes[0])
  config = wut.get_preset(FLAGS.preset).replace(num_layers=FLAGS.layers, num_initial_filters=FLAGS.filters,
                                                batch_size=batch_size, steps_per_epoch=10 ** 6)
  scratch = tempfile.mkdtemp(prefix="train-pipeline-")
  toy.write_toy_dataset(os.path.join(scratch, "toy"), num_tracks=6, seconds=20.0, seed=0)
  data = training.DataOptions(musdb_root=os.path.join(scratch, "toy"), cache_dir=os.path.join(scratch, "cache"))
  trainer = training.Trainer(config, os.path.join(scratch, "run"), data,
                             training.RunOptions(jit_compile=FLAGS.jit_compile, checkpoint_every=0))
  step = trainer._step = bare_step(trainer.model, trainer.optimizer, batch_size)
  batch = next(iter(trainer._training_batches(batch_size)))
  batches = trainer._training_batches(batch_size)
  time_calls(lambda: step(batch), 3)
  trainer._run_steps(step, batches, 3, batch_size)  # the stream's warm-up
  # Alternating rounds, so that what else runs on a shared host weighs on both alike.
  ratios, bare_rates, fed_rates = [], [], []
  for _ in range(FLAGS.rounds):
    bare_s = float(np.mean(time_calls(lambda: step(batch), FLAGS.steps)))
    start = time.perf_counter()
    trainer._run_steps(step, batches, FLAGS.steps, batch_size)
    fed_s = (time.perf_counter() - start) / FLAGS.steps
    ratios.append(bare_s / fed_s)
    bare_rates.append(batch_size / bare_s)
    fed_rates.append(batch_size / fed_s)
  row = {"backend": backend, "device": device_name(), "preset": FLAGS.preset, "num_layers": FLAGS.layers,
         "num_initial_filters": FLAGS.filters, "batch_size": batch_size, "steps": FLAGS.steps, "rounds": FLAGS.rounds,
         "bare_examples_per_s": round(float(np.median(bare_rates)), 2),
         "fed_examples_per_s": round(float(np.median(fed_rates)), 2),
         "fed_over_bare": round(float(np.median(ratios)), 3), "fed_over_bare_rounds": [round(r, 3) for r in ratios]}
  print(json.dumps(row), flush=True)
  if FLAGS.save:
    from benchmarks import results
    results.save(f"train_pipeline_{backend}", [row], device=row["device"], cpus=os.cpu_count())
  import shutil
  shutil.rmtree(scratch, ignore_errors=True)


def main(_):
  from absl import logging
  logging.set_verbosity(logging.WARNING)  # JAX's notes on platforms it did not find
  backend = FLAGS.backend or os.environ.get("KERAS_BACKEND") or "tensorflow"
  if os.environ.get("KERAS_BACKEND") != backend:  # Keras reads it once, at import: start again under it
    env = dict(os.environ, KERAS_BACKEND=backend)
    sys.exit(subprocess.run([sys.executable, *sys.argv], env=env).returncode)
  if FLAGS.mode == "pipeline":
    pipeline_mode(backend)
    return
  if FLAGS.child:
    setting, batch_size = FLAGS.child.split(",")
    time_setting(setting, int(batch_size))
    return
  # One process per setting: a mixed-precision policy is global, and compiled programs stay apart.
  rows = []
  for batch_size in FLAGS.batch_sizes:
    for setting in FLAGS.settings:
      out = subprocess.run([sys.executable, __file__, f"--child={setting},{batch_size}", f"--preset={FLAGS.preset}",
                            f"--steps={FLAGS.steps}", f"--jit_compile={FLAGS.jit_compile}"],
                           stdout=subprocess.PIPE, text=True, check=True).stdout
      print(out, end="", flush=True)
      rows.append(json.loads(out.strip().splitlines()[-1]))
  if FLAGS.save and rows:
    from benchmarks import results
    results.save(f"train_step_{backend}", rows, device=rows[0]["device"], preset=FLAGS.preset, steps=FLAGS.steps)


if __name__ == "__main__":
  app.run(main)
