"""Fine-tuning vs training from scratch: steps to the same validation loss on a dataset of other songs.

    python benchmarks/fine_tune.py [--source_steps 600] [--steps 300] [--every 25] [--work_dir DIR]

1. Two toy datasets of different songs (`wave-unet-toy-data` with seeds 0 and 1).
2. A source model trained by the quickstart recipe (flags/quickstart.cfg) on the first, for at most
   ``--source_steps`` steps (the recipe's own 4 epochs of 150 steps by default; early stopping may end it
   sooner).
3. On the second dataset, with the same recipe and validation set, validating every ``--every`` steps:
   ``--steps`` steps from scratch, and ``--fine_tune_steps`` steps from the source (``--init_from``).

Prints the scratch run's best validation loss within ``--steps`` steps (reached at step N), the first
validation step at which the fine-tuning run reaches it (M; step 0 is the source model itself, validated the
same way), and N / M; the target is N / M >= 3. Every run is
the real `train.py` command; the validation losses are read from its TensorBoard logs.
"""

import json
import os
import pathlib
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import results  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]

flags.DEFINE_string("work_dir", "/tmp/wave_unet_fine_tune_benchmark", "Datasets and runs go here (reused: a "
                    "finished run is not trained again).")
flags.DEFINE_integer("tracks", 16, "Training songs per toy dataset (the quickstart's 16).")
flags.DEFINE_float("seconds", 12.0, "Length of each toy song (the quickstart's 12 s).")
flags.DEFINE_integer("source_steps", 600, "At most this many steps for the source model (the quickstart's 4 x 150).")
flags.DEFINE_integer("steps", 300, "Steps from scratch on the second dataset (N).")
flags.DEFINE_integer("fine_tune_steps", None, "Steps of the fine-tuning run (default: --steps / 2).")
flags.DEFINE_integer("every", 25, "Validate every this many steps.")
flags.DEFINE_integer("batch_size", None, "Override the recipe's batch size (default: the quickstart's 16).")
flags.DEFINE_integer("max_validation_batches", 30, "Validation batches (the quickstart's 30).")
flags.DEFINE_float("low_learning_rate", 1e-4, "Also fine-tune at this learning rate (the recipe's is 5e-4; 0: not).")
FLAGS = flags.FLAGS


def train(*args):
  command = [sys.executable, str(ROOT / "train.py"), *args]
  if FLAGS.batch_size:
    command.append(f"--batch_size={FLAGS.batch_size}")
  start = time.perf_counter()
  result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
  if result.returncode != 0:
    raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
  return json.loads(result.stdout.strip().splitlines()[-1]), time.perf_counter() - start


def validation_losses(model_dir):
  """``{step: validation loss}`` from a run's TensorBoard logs."""
  import tensorflow as tf
  folder = os.path.join(model_dir, "logs", "valid")
  losses = {}
  for name in sorted(os.listdir(folder)):
    for record in tf.data.TFRecordDataset(os.path.join(folder, name)):
      event = tf.compat.v1.Event.FromString(record.numpy())
      for value in event.summary.value:
        if value.tag == "loss":
          losses[int(event.step)] = float(tf.make_ndarray(value.tensor))
  return dict(sorted(losses.items()))


def loss_before_fine_tuning(source, model_dir, musdb_root, cache_dir):
  """The validation loss of a fine-tuning run at step 0 (the source model on the second dataset's validation
  tiles), through the trainer's own validation."""
  import dataclasses
  from wave_unet_tf.training import warm_start
  from wave_unet_tf.training.trainer import DataOptions, RunOptions, Trainer
  config = warm_start.load_source(str(source)).wave_unet_config
  config = dataclasses.replace(config, batch_size=FLAGS.batch_size or config.batch_size)
  data = DataOptions(musdb_root=str(musdb_root), cache_dir=str(cache_dir),
                     max_validation_batches=FLAGS.max_validation_batches)
  return Trainer(config, str(model_dir), data, RunOptions(init_from=str(source))).validate()


def main(argv):
  del argv
  from wave_unet_tf import runtime
  from wave_unet_tf.data.toy import write_toy_dataset
  runtime.quiet_terminal()  # the figures and the commands' own lines, not TensorFlow's start-up log

  work = pathlib.Path(FLAGS.work_dir)
  data = {}
  for name, seed in (("songs_a", 0), ("songs_b", 1)):
    data[name] = work / name
    if not (data[name] / "train").is_dir():
      write_toy_dataset(str(data[name]), num_tracks=FLAGS.tracks, seconds=FLAGS.seconds, seed=seed,
                        num_test_tracks=1)
  recipe = f"--flagfile={ROOT / 'flags' / 'quickstart.cfg'}"
  cache = f"--cache_dir={work / 'cache'}"
  quiet = ["--summary_every=1000"]

  source = work / "source"
  summary, seconds = train(recipe, f"--musdb_root={data['songs_a']}", f"--model_dir={source}", cache,
                           f"--max_steps={FLAGS.source_steps}", *quiet)
  print(json.dumps({"run": "source (quickstart recipe, songs A)", "steps": summary["step"],
                    "best_validation_loss": summary["best_validation_loss"], "seconds": round(seconds)}), flush=True)

  common = [f"--musdb_root={data['songs_b']}", cache, f"--steps_per_epoch={FLAGS.every}", "--patience=1000000",
            f"--max_validation_batches={FLAGS.max_validation_batches}", *quiet]
  fine_tune_steps = FLAGS.fine_tune_steps or FLAGS.steps // 2
  runs = {"scratch": (work / "scratch", [recipe, f"--max_epochs={FLAGS.steps // FLAGS.every}"]),
          "fine_tune": (work / "fine_tune", [f"--init_from={source}", f"--max_epochs={fine_tune_steps // FLAGS.every}"])}
  if FLAGS.low_learning_rate:
    runs["fine_tune_low_lr"] = (work / "fine_tune_low_lr", [f"--init_from={source}", f"--learning_rate={FLAGS.low_learning_rate}",
                                                           f"--max_epochs={fine_tune_steps // FLAGS.every}"])
  curves = {}
  for name, (model_dir, extra) in runs.items():
    summary, seconds = train(*extra, f"--model_dir={model_dir}", *common)  # the recipe first: flags override it
    curves[name] = validation_losses(str(model_dir))
    print(json.dumps({"run": f"{name} (songs B)", "steps": summary["step"], "seconds": round(seconds),
                      "validation_loss": {str(k): round(v, 6) for k, v in curves[name].items()}}), flush=True)

  step_0 = loss_before_fine_tuning(source, work / "step_0", data["songs_b"], work / "cache")
  for name in curves:
    if name.startswith("fine_tune"):
      curves[name] = {0: step_0, **curves[name]}
  target = min(curves["scratch"].values())
  n = min(step for step, loss in curves["scratch"].items() if loss <= target)
  reached = [step for step, loss in curves["fine_tune"].items() if loss <= target]
  m = min(reached) if reached else None
  print(json.dumps({
      "scratch_best_validation_loss": round(target, 6), "scratch_steps_N": n, "fine_tune_steps_M": m,
      "ratio_N_over_M": round(n / m, 2) if m else None if m is None else "infinite (the source reaches it unchanged)",
      "fine_tune_validation_loss_at_step_0": round(curves["fine_tune"][0], 6),
      "target": "N / M >= 3", "met": m is not None and (m == 0 or n / m >= 3),
      "best_validation_loss": {name: round(min(curve.values()), 6) for name, curve in curves.items()}}))
  rows = [{"run": name, "step": step, "validation_loss": round(loss, 6)}
          for name, curve in curves.items() for step, loss in sorted(curve.items())]
  print("kept in", results.save("fine_tune", rows, scratch_steps_N=n, fine_tune_steps_M=m))


if __name__ == "__main__":
  app.run(main)
