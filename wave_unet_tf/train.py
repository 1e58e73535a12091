r"""wave-unet-train: train a Wave-U-Net preset on MUSDB18, MUSDB18-HQ or a folder in MUSDB18-HQ layout.

  python train.py --flagfile=flags/m5_highsr.cfg
  python train.py --flagfile=flags/quickstart.cfg --max_steps=100

  python train.py --flagfile=flags/fine_tune.cfg --musdb_root=my_stems --source_names=speech,noise

Every config field is a flag (listed below). Running the same command again with the same --model_dir
resumes where it stopped. --batch_size is the global batch, split across all replicas. --init_from starts a
new run from another model's weights (fine-tuning); its config is that model's, changed by the flags given.
It trains on the Keras backend that KERAS_BACKEND names (tensorflow, jax or torch), and a run started on one
resumes on another.
"""

import contextlib
import dataclasses
import json
import os

from absl import flags

from wave_unet_tf import cli
from wave_unet_tf.config import Config
from wave_unet_tf.config_flags import config_from_flags, define_config_flags
from wave_unet_tf.training import settings

define_config_flags()
settings.define_flags()
cli.define_model_repo_flag()  # for --init_from=<a catalogue name>
flags.DEFINE_string("model_dir", None, "Run folder: checkpoints, config.json, run_settings.json, TensorBoard logs, "
                                       "best.keras.")
FLAGS = flags.FLAGS
HELP_GROUPS = (
    ("Model (a preset, then --config_json, then any config field)", ("preset", "config_json")),
    ("Data", tuple(f.name for f in dataclasses.fields(settings.DataOptions))),
    ("Run", ("model_dir", *(f.name for f in dataclasses.fields(settings.RunOptions)), "model_repo")),
    ("Config fields (default: the preset's)", tuple(f.name for f in dataclasses.fields(Config))),
)


def main(argv):
  if len(argv) > 1:
    raise cli.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if FLAGS.init_from and FLAGS.preset:
    raise cli.UsageError(f"--preset={FLAGS.preset} and --init_from={FLAGS.init_from}: give one (a fine-tuning run's "
                         f"config is its --init_from model's, changed by the config flags given)")
  if not FLAGS.init_from:
    config = config_from_flags()
  for name in ("musdb_root", "model_dir"):
    if not FLAGS[name].value:
      raise cli.UsageError(f"--{name} is required")
  if not os.path.isdir(FLAGS.musdb_root):
    raise cli.UsageError(
        f"--musdb_root={FLAGS.musdb_root}: no such folder. Get MUSDB18 from https://sigsep.github.io/datasets/"
        f"musdb.html, or make a toy dataset: wave-unet-toy-data --output_dir data/toy")
  data, options = settings.from_flags()
  if not data.cache_dir:
    data = dataclasses.replace(data, cache_dir=os.path.join(os.path.dirname(os.path.abspath(FLAGS.model_dir)),
                                                            ".cache"))
  cli.start_tensorflow()
  from wave_unet_tf.backends import training as backend
  backend.split_cpu(options.num_cpu_devices)  # before the backend starts its devices
  backend.keep_tensorflow_off_accelerators()
  import keras
  if options.mixed_precision != "none":
    keras.mixed_precision.set_global_policy(options.mixed_precision)
  from wave_unet_tf.training.trainer import Trainer

  from wave_unet_tf.training import checkpoints, lock

  init_model = None
  if FLAGS.init_from:
    from wave_unet_tf.training import warm_start
    if warm_start.has_checkpoint(FLAGS.model_dir):  # resuming the run itself: the source is not read again
      base = _run_config(FLAGS.model_dir)
    else:
      init_model = warm_start.load_source(FLAGS.init_from)
      base = init_model.wave_unet_config
    config = config_from_flags(base=base)
    if init_model is not None:  # a refused change, before the run folder (and its lock) is made
      warm_start.check_config(init_model.wave_unet_config, config, FLAGS.init_from)
  if options.freeze:
    from wave_unet_tf.training import warm_start
    warm_start.frozen_layers(config, warm_start.parse_freeze(options.freeze))

  devices = backend.make_devices(options.strategy, options.tpu)  # a strategy the backend lacks: one line
  chief = devices.chief
  # One process trains in a folder at a time; in a multi-worker run the chief, which writes it, holds the lock.
  with lock.hold(FLAGS.model_dir) if chief else contextlib.nullcontext():
    if chief:
      checkpoints.remove_leftovers(FLAGS.model_dir)  # no other process writes here now
    summary = Trainer(config, FLAGS.model_dir, data, options, devices, init_model=init_model).train()
  print(json.dumps(summary))


def _run_config(model_dir):
  from wave_unet_tf.training.run_folder import CONFIG_FILE
  from wave_unet_tf.config import Config
  try:
    return Config.from_json_file(os.path.join(model_dir, CONFIG_FILE))
  except ValueError as e:
    raise cli.UsageError(f"--model_dir={model_dir}: {e}") from None


def run():
  cli.run(main, HELP_GROUPS)


if __name__ == "__main__":
  run()
