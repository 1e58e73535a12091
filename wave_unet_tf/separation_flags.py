"""The flags every separating command shares (`wave-unet-separate`, `wave-unet-separate-beam`): the model, where
the stems go and how they are written (`OutputOptions`), which part of each input, and how the model runs.

Defined once here so that a flag means the same in every command; each command adopts this module's and
`outputs`' flags as key flags (``flags.adopt_module_key_flags``) so its ``--help`` lists them with its own.
"""

from absl import flags

from wave_unet_tf import catalogue, cli, precision
from wave_unet_tf.runtime import DEVICES
from wave_unet_tf.separation import outputs
from wave_unet_tf.separation.separator import DEFAULT_BATCH_SIZE, DEFAULT_WINDOW_SECONDS


def define_flags():
  cli.define_model_flags(default=catalogue.DEFAULT_MODEL)  # --model and --model_repo
  flags.DEFINE_string("output_dir", "separated", "The folder --filename is under.")
  outputs.define_flags()
  flags.DEFINE_float("offset", 0.0, "Separate from this many seconds into each input.", lower_bound=0.0)
  flags.DEFINE_float("duration", None, "Separate at most this many seconds of each input (default: to its end).")
  flags.DEFINE_string("device", "auto", f"Where the model runs: {DEVICES} (auto: a GPU if there is one).")
  flags.DEFINE_float("window_seconds", None, "Output audio per forward pass, in seconds. Changes speed and memory, "
                     f"not the result. Default: {DEFAULT_WINDOW_SECONDS:g} on a CPU; on a GPU, sized to its free "
                     "memory (a whole song in one pass when it fits).")
  flags.DEFINE_alias("frame_seconds", "window_seconds")  # the flag's first name
  flags.DEFINE_integer("batch_size", DEFAULT_BATCH_SIZE, "Windows per forward pass.", lower_bound=1)
  precision.define_flag()
  flags.DEFINE_bool("jit_compile", True, "Compile the forward pass with XLA (faster on CPU and GPU).")
  flags.DEFINE_string("compile_cache", cli.DEFAULT_COMPILE_CACHE, "Folder keeping XLA-compiled forward passes "
                      "between runs ('' for none).")


def check_flags(values=flags.FLAGS):
  """What the flags alone cannot say about their values; `cli.UsageError` naming the flag."""
  if values.window_seconds is not None and values.window_seconds <= 0:
    raise cli.UsageError(f"--window_seconds={values.window_seconds}: must be positive")
  if values.duration is not None and values.duration <= 0:
    raise cli.UsageError(f"--duration={values.duration}: must be positive")
