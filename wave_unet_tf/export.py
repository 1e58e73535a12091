r"""wave-unet-export: write a SavedModel (TensorFlow Serving) and/or a TFLite model of a trained model.

  wave-unet-export --model M5-HighSR --saved_model_dir exported/m5_highsr/1 \
      --tflite exported/m5_highsr.tflite --quantize float16
  wave-unet-export --model M5-HighSR --web site/          # a static page that separates in the browser
"""

import os
import sys

from absl import flags

from wave_unet_tf import catalogue, cli
from wave_unet_tf.separation.stream_graph import DEFAULT_BLOCK_FRAMES

cli.define_model_flags(help_text="A Keras model: a pretrained model's name (" + ", ".join(catalogue.NAMES) + ", "
                       "fetched once into the cache), a .keras file, a training --model_dir, an original TF1 "
                       "checkpoint, an http(s):// URL of a .keras file or hf:// (see wave_unet_tf.load_model).")
flags.DEFINE_string("saved_model_dir", None, "Write a SavedModel here (TF Serving wants <name>/<version>).")
flags.DEFINE_string("tflite", None, "Write a TFLite model of the fixed-window forward pass to this .tflite path.")
flags.DEFINE_enum("quantize", "none", ["none", "float16", "dynamic"],
                  "TFLite weights: float32, float16, or dynamic-range int8.")
flags.DEFINE_float("window_seconds", None, "Output seconds per exported window (default: the training window; "
                   "--web: 10 s).")
flags.DEFINE_alias("frame_seconds", "window_seconds")  # the flag's first name
flags.DEFINE_boolean("xla", True, "Compile the SavedModel's signatures with XLA (the in-process speed; TF Serving "
                     "needs --xla_cpu_compilation_enabled=true, else call serving_default_noxla or "
                     "separate_noxla). --noxla: only the uncompiled signatures.")
# Real-time streaming model: one block in, one block out, the cached features as state tensors.
flags.DEFINE_string("tflite_stream", None, "Write a streaming TFLite model (one block in, one block of each "
                    "source out, the state as explicit tensors) to this .tflite path.")
flags.DEFINE_integer("block_frames", DEFAULT_BLOCK_FRAMES, "Samples per block of --tflite_stream, at the "
                     "model's rate (a multiple of 2**num_layers).")
flags.DEFINE_string("web", None, "Write a static site here that separates files and live audio in the browser "
                    "(LiteRT.js; serve the folder from any static host).")
flags.DEFINE_enum("precision", "float32", ["float32", "float16", "int8"], "Weights of the --web site's models: "
                  "float32 (exact), float16 (half the download) or int8 (a quarter, and twice as fast in the browser).")
flags.DEFINE_boolean("overwrite", False, "Replace existing outputs.")
FLAGS = flags.FLAGS
HELP_GROUPS = (
    ("Model", ("model", "model_repo")),
    ("TensorFlow Serving", ("saved_model_dir", "xla", "window_seconds", "frame_seconds")),
    ("TFLite", ("tflite", "quantize", "tflite_stream", "block_frames")),
    ("In the browser", ("web", "precision")),
    ("Output", ("overwrite",)),
)


def main(argv):
  from wave_unet_tf import backends
  if not backends.is_tensorflow():  # SavedModel and TFLite are TensorFlow's: the same export, run there
    from wave_unet_tf.backends import tensorflow_child
    sys.exit(tensorflow_child.rerun_command("wave_unet_tf.export"))
  if len(argv) > 1:
    raise cli.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not FLAGS.saved_model_dir and not FLAGS.tflite and not FLAGS.tflite_stream and not FLAGS.web:
    raise cli.UsageError("give --saved_model_dir, --tflite, --tflite_stream, --web or several")
  if FLAGS["precision"].present and not FLAGS.web:
    raise cli.UsageError("--precision: sets the --web site's models (--tflite takes --quantize)")
  if FLAGS.web:
    from wave_unet_tf.web.site import check_destination, litertjs_folder
    check_destination(FLAGS.web, FLAGS.overwrite)
    litertjs_folder()
  for flag in ("tflite", "tflite_stream"):
    path = FLAGS[flag].value
    if not path:
      continue
    if not path.endswith(".tflite"):
      raise cli.UsageError(f"--{flag}={path}: the file name must end in .tflite")
    if os.path.exists(path) and not FLAGS.overwrite:
      raise cli.UsageError(f"--{flag}={path}: already exists (pass --overwrite to replace it)")
    if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
      raise cli.UsageError(f"--{flag}={path}: its folder does not exist")
  cli.fetch_named_model(FLAGS.model)
  cli.start_tensorflow()
  from wave_unet_tf.deploy import saved_model, tflite
  from wave_unet_tf.model_sources import load_model, NotAModelError
  from wave_unet_tf.model.wave_unet import WaveUNet

  model = load_model(FLAGS.model)
  if not isinstance(model, WaveUNet):
    raise NotAModelError(f"--model={FLAGS.model}: export needs a .keras model or a training --model_dir")
  if FLAGS.saved_model_dir:
    plan = saved_model.export_saved_model(model, FLAGS.saved_model_dir, FLAGS.window_seconds,
                                          overwrite=FLAGS.overwrite, xla=FLAGS.xla)
    print(f"wrote SavedModel {FLAGS.saved_model_dir}: serving_default [batch, {plan.input_frames}, "
          f"{model.wave_unet_config.num_channels}] -> [batch, {plan.output_frames}, ...]; separate [samples, "
          f"{model.wave_unet_config.num_channels}]")
  if FLAGS.tflite:
    tflite.export_tflite(model, FLAGS.tflite, FLAGS.quantize, FLAGS.window_seconds)
    print(f"wrote {FLAGS.tflite} ({FLAGS.quantize}, {os.path.getsize(FLAGS.tflite) / 1e6:.1f} MB)")
  if FLAGS.tflite_stream:
    from wave_unet_tf.deploy.tflite_stream import export_tflite_stream
    export_tflite_stream(model, FLAGS.tflite_stream, FLAGS.block_frames)
    print(f"wrote {FLAGS.tflite_stream} (streaming, blocks of {FLAGS.block_frames} samples, "
          f"{os.path.getsize(FLAGS.tflite_stream) / 1e6:.1f} MB)")
  if FLAGS.web:
    from wave_unet_tf.web.site import build_site
    manifest = build_site(model, FLAGS.web, FLAGS.precision, FLAGS.window_seconds, FLAGS.block_frames,
                          FLAGS.overwrite)
    stream = manifest["stream"]
    print(f"wrote the site {FLAGS.web} ({FLAGS.precision}; {', '.join(manifest['sources'])}; live: the stems "
          f"{(stream['latencyFrames'] + 2 * stream['blockFrames']) / manifest['sampleRate']:.2f} s after the sound); "
          f"serve it, e.g. python -m wave_unet_tf.web.serve {FLAGS.web}")


def run():
  cli.run(main, HELP_GROUPS)


if __name__ == "__main__":
  run()
