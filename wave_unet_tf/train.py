r"""wave-unet-train: train a Wave-U-Net preset on MUSDB18, MUSDB18-HQ or a folder in MUSDB18-HQ layout.

  python train.py --flagfile=flags/m5_highsr.cfg
  python train.py --flagfile=flags/quickstart.cfg --max_steps=100

Every config field is a flag (see --helpfull). Running the same command again with the same --model_dir
resumes where it stopped. --batch_size is the global batch, split across all replicas.
"""

import json
import os

from absl import flags, logging

from wave_unet_tf import cli
from wave_unet_tf.config_flags import config_from_flags, define_config_flags

define_config_flags()
flags.DEFINE_string("musdb_root", None, "MUSDB18 (.stem.mp4), MUSDB18-HQ (WAV) or a folder in MUSDB18-HQ layout "
                                        "(train/<track>/{mixture,vocals,drums,bass,other}.wav).")
flags.DEFINE_boolean("is_wav", None, "The root is in MUSDB18-HQ layout (default: detected).")
flags.DEFINE_string("model_dir", None, "Run folder: checkpoints, config.json, TensorBoard logs, best.keras.")
flags.DEFINE_string("cache_dir", None, "Decoded tracks are cached here (default: <model_dir>/../.cache).")
flags.DEFINE_enum("split", "official", ["official", "random"],
                  "Validation split: musdb's official one, or the original's random 75/25 (seed 1337).")
flags.DEFINE_boolean("channel_swap", False, "Randomly swap the stereo channels of training excerpts.")
flags.DEFINE_boolean("remix", False, "Mix sources of different songs in training excerpts.")
flags.DEFINE_integer("max_validation_batches", 0, "Validate on at most this many batches (0: all).")
flags.DEFINE_enum("strategy", "default", ["default", "mirrored", "multi_worker", "tpu"],
                  "tf.distribute strategy: one device, all local GPUs, workers from TF_CONFIG, or a TPU.")
flags.DEFINE_string("tpu", None, "TPU address for --strategy=tpu (Colab: leave empty).")
flags.DEFINE_integer("num_cpu_devices", 1, "Split the CPU into this many logical devices (try --strategy=mirrored "
                                           "without GPUs).")
flags.DEFINE_enum("mixed_precision", "none", ["none", "mixed_float16", "mixed_bfloat16"],
                  "Keras mixed-precision policy; outputs and loss stay float32.")
flags.DEFINE_integer("seed", 0, "Seeds the initial weights and the data stream.")
flags.DEFINE_integer("max_steps", 0, "Stop after this many steps in all (0: early stopping decides).")
flags.DEFINE_integer("checkpoint_every", 500, "Also checkpoint every this many steps within an epoch.")
flags.DEFINE_integer("summary_every", 20, "Write the training loss to TensorBoard every this many steps.")
flags.DEFINE_boolean("jit_compile", True, "Compile the training step with XLA (faster on CPUs and GPUs).")
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise cli.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  config = config_from_flags()
  for name in ("musdb_root", "model_dir"):
    if not FLAGS[name].value:
      raise cli.UsageError(f"--{name} is required")
  if not os.path.isdir(FLAGS.musdb_root):
    raise cli.UsageError(
        f"--musdb_root={FLAGS.musdb_root}: no such folder. Get MUSDB18 from https://sigsep.github.io/datasets/"
        f"musdb.html, or make a toy dataset: wave-unet-toy-data --output_dir data/toy")
  cli.quiet_tensorflow()
  logging.set_verbosity(logging.INFO)
  from wave_unet_tf.training import strategy as strategies
  strategies.split_cpu(FLAGS.num_cpu_devices)
  import keras
  if FLAGS.mixed_precision != "none":
    keras.mixed_precision.set_global_policy(FLAGS.mixed_precision)
  from wave_unet_tf.training.trainer import DataOptions, RunOptions, Trainer

  cache_dir = FLAGS.cache_dir or os.path.join(os.path.dirname(os.path.abspath(FLAGS.model_dir)), ".cache")
  trainer = Trainer(
      config, FLAGS.model_dir,
      DataOptions(FLAGS.musdb_root, cache_dir, FLAGS.is_wav, FLAGS.split, FLAGS.channel_swap, FLAGS.remix,
                  FLAGS.max_validation_batches),
      RunOptions(FLAGS.seed, FLAGS.max_steps, FLAGS.checkpoint_every, FLAGS.summary_every, FLAGS.jit_compile),
      strategies.make_strategy(FLAGS.strategy, FLAGS.tpu))
  summary = trainer.train()
  print(json.dumps(summary))


def run():
  cli.run(main)


if __name__ == "__main__":
  run()
