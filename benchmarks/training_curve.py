"""The quickstart's training curve: training and validation loss per step, read from a run's TensorBoard logs.

  bash scripts/demo.sh                                      # or: python train.py --flagfile=flags/quickstart.cfg
  python benchmarks/training_curve.py --model_dir demo/quickstart

Reads ``<model_dir>/logs/train`` and ``logs/valid`` (the ``loss`` summaries `wave-unet-train` writes), keeps
them as ``benchmarks/results/quickstart_curve.json`` (`results.save`, with the run's config and how long it
took) and draws ``docs/img/quickstart_curve.png`` with `charts.py`.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from absl import app, flags  # noqa: E402

flags.DEFINE_string("model_dir", "demo/quickstart", "The training run's folder (its logs/ are read).")
flags.DEFINE_string("name", "quickstart_curve", "Name of the results file (benchmarks/results/<name>.json).")
flags.DEFINE_string("about", "python train.py --flagfile=flags/quickstart.cfg on the toy data of seed 0 "
                    "(wave-unet-toy-data --num_tracks 16 --seconds 12 --seed 0)", "How the run was made.")
FLAGS = flags.FLAGS


def read_losses(log_dir: str) -> list:
  """``[(step, loss)]`` of the ``loss`` summaries in a TensorBoard log folder, in step order."""
  from tensorboard.backend.event_processing import event_accumulator
  from tensorboard.util import tensor_util

  accumulator = event_accumulator.EventAccumulator(log_dir, size_guidance={event_accumulator.TENSORS: 0,
                                                                           event_accumulator.SCALARS: 0})
  accumulator.Reload()
  tags = accumulator.Tags()
  if "loss" in tags.get("tensors", []):
    events = [(e.step, float(tensor_util.make_ndarray(e.tensor_proto))) for e in accumulator.Tensors("loss")]
  elif "loss" in tags.get("scalars", []):
    events = [(e.step, float(e.value)) for e in accumulator.Scalars("loss")]
  else:
    raise ValueError(f"{log_dir}: no loss summaries (is it a wave-unet-train run's logs/ folder?)")
  return sorted(events)


def main(argv):
  del argv
  import charts
  import results

  logs = os.path.join(FLAGS.model_dir, "logs")
  if not os.path.isdir(logs):
    raise app.UsageError(f"--model_dir={FLAGS.model_dir}: no logs/ folder")
  rows = [{"split": split, "step": step, "loss": loss}
          for split, folder in (("training", "train"), ("validation", "valid"))
          for step, loss in read_losses(os.path.join(logs, folder))]
  config = {}
  if os.path.exists(os.path.join(FLAGS.model_dir, "config.json")):
    with open(os.path.join(FLAGS.model_dir, "config.json")) as f:
      config = json.load(f)
  made = [os.path.getmtime(os.path.join(FLAGS.model_dir, name)) for name in ("config.json", "best.keras")
          if os.path.exists(os.path.join(FLAGS.model_dir, name))]
  path = results.save(FLAGS.name, rows, run=FLAGS.about, config=config,
                      wall_s=round(made[-1] - made[0]) if len(made) == 2 else None)
  print(f"{len(rows)} points kept in {path}")
  print("drew", charts.quickstart_curve(results.load(FLAGS.name)))


if __name__ == "__main__":
  app.run(main)
