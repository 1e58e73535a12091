r"""wave-unet-convert: turn an original Wave-U-Net TF1 checkpoint into this project's ``.keras`` model.

  wave-unet-convert --checkpoint checkpoints/full_44KHz/full_44KHz-236118 --preset M5-HighSR \
      --output checkpoints/M5-HighSR.keras
"""

from absl import flags

from wave_unet_tf import cli
from wave_unet_tf.config import Config, get_preset, preset_names

flags.DEFINE_string("checkpoint", None, "TF1 checkpoint prefix (path/name-<step>) or its folder.")
flags.DEFINE_string("preset", None, f"Config the checkpoint was trained with: {', '.join(preset_names())}.")
flags.DEFINE_string("config_json", None, "Or a JSON config (this project's keys or the original Config.py's).")
flags.DEFINE_string("output", None, "Where to write the .keras model.")
flags.mark_flags_as_required(["checkpoint", "output"])
FLAGS = flags.FLAGS
HELP_GROUPS = (("Checkpoint", ("checkpoint", "preset", "config_json")), ("Output", ("output",)))


def main(argv):
  if len(argv) > 1:
    raise cli.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if bool(FLAGS.preset) == bool(FLAGS.config_json):
    raise cli.UsageError("give exactly one of --preset and --config_json")
  config = get_preset(FLAGS.preset) if FLAGS.preset else Config.from_json_file(FLAGS.config_json)
  cli.start_tensorflow()
  from wave_unet_tf.conversion.tf1_checkpoint import convert_tf1_checkpoint
  model = convert_tf1_checkpoint(FLAGS.checkpoint, config, output=FLAGS.output)
  print(f"wrote {FLAGS.output}: {model.count_params():,} parameters, sources {', '.join(config.source_names)}, "
        f"{config.sample_rate} Hz, {config.num_channels} channel(s)")


def run():
  cli.run(main, HELP_GROUPS)


if __name__ == "__main__":
  run()
