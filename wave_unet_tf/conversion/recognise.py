"""Which preset an original TF1 checkpoint was trained with, read from its variables.

The variables give the layers' names and shapes (depth, widths, kernel sizes, channels, learned or linear
upsampling, number of output convolutions), not the sample rate nor the padding: presets whose variables
are the same (M5 and M5-HighSR; M2 and M3) are told apart by the name the original released them under
(``checkpoints/full_44KHz/full_44KHz-236118``), and without one the first of them (22 kHz) is taken and said.
"""

import os
import re
from typing import List, Optional, Tuple

from wave_unet_tf.config import ORIGINAL_NAMES, PRESETS
from wave_unet_tf.conversion.tf1_checkpoint import CheckpointMismatchError, SCOPE, original_variables


def checkpoint_shapes(prefix: str) -> dict:
  """``{original name: shape}`` of a TF1 checkpoint's model variables (optimizer state left out), read from
  its index alone."""
  import tensorflow as tf

  try:
    shapes = tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
  except Exception as e:  # TF raises several types for a corrupt or foreign file.
    raise CheckpointMismatchError(f"{prefix}: unreadable TF1 checkpoint ({type(e).__name__})") from None
  return {name: tuple(shape) for name, shape in shapes.items() if name.startswith(SCOPE)}


def released_name(path: str) -> Optional[str]:
  """The preset named by a checkpoint's prefix or folder (``full_44KHz-236118``, ``full_44KHz/``,
  ``M5-HighSR``), or None."""
  path = os.path.abspath(path)
  candidates = [os.path.basename(path), os.path.basename(os.path.dirname(path))]
  for candidate in candidates:
    name = re.sub(r"-\d+$", "", candidate)  # the original's prefixes end in -<global step>
    if name in ORIGINAL_NAMES:
      return ORIGINAL_NAMES[name]
    if name in PRESETS:
      return name
  return None


def architecture(shapes: dict) -> dict:
  """The config fields the variables determine (`wave_unet_tf.model.structure`'s layout in the original's
  creation order): depth, widths, kernel sizes, channels, upsampling, and the output convolutions (one per
  source, less one with difference output). Fields it cannot read are left out."""
  kernels = {}
  for name, shape in shapes.items():
    found = re.fullmatch(r"separator/conv1d(?:_(\d+))?/kernel", name)
    if found and len(shape) == 3:
      kernels[int(found.group(1) or 0)] = shape
  convs = [kernels[i] for i in sorted(kernels)]
  if not convs:
    return {}
  depth = max(range(len(convs)), key=lambda i: convs[i][2])  # the bottleneck is the widest convolution
  fields = {"num_channels": convs[0][1], "num_initial_filters": convs[0][2], "filter_size": convs[0][0],
            "num_layers": depth,
            "upsampling": "learned" if any(n.startswith("separator/interp_") for n in shapes) else "linear",
            "output convolutions": len(convs) - 2 * depth - 1}
  if len(convs) > depth + 1:
    fields["merge_filter_size"] = convs[depth + 1][0]
  if fields["output convolutions"] > 0:
    fields["output_filter_size"] = convs[-1][0]
  return fields


def _differences(config, shapes: dict) -> Tuple[int, List[str]]:
  """``(rank, [what differs])`` between a preset and a checkpoint's variables; lower ranks are closer."""
  expected = {name: tuple(shape) for name, shape, _ in original_variables(config)}
  have, want = architecture(shapes), architecture(expected)
  fields = [f"{field} {have.get(field, '?')} where the preset has {value}" for field, value in want.items()
            if have.get(field) != value]
  reshaped = [n for n in expected if n in shapes and shapes[n] != expected[n]]
  names = set(expected) ^ set(shapes)
  if not fields:  # the same layout, yet not the same variables: name what is off
    if names:
      fields.append(f"variable {sorted(names)[0]} in one of them only")
    elif reshaped:
      fields.append(f"variable {reshaped[0]} {list(shapes[reshaped[0]])} where the preset has "
                    f"{list(expected[reshaped[0]])}")
  return (len(fields), len(names) + len(reshaped)), fields


def recognise_preset(shapes: dict, path: str) -> Tuple[str, Optional[str]]:
  """``(preset name, note)`` for a checkpoint whose variables have ``shapes`` (``{original name: shape}``,
  optimizer state left out). ``note`` says when the name did not settle between presets of equal variables.

  Raises:
    CheckpointMismatchError: no preset has these variables; names the closest and what differs.
  """
  shapes = {name: tuple(shape) for name, shape in shapes.items()}
  matching = [name for name, config in PRESETS.items()
              if {n: tuple(s) for n, s, _ in original_variables(config)} == shapes]
  if not matching:
    closest = min(PRESETS, key=lambda name: _differences(PRESETS[name], shapes)[0])
    differs = ", ".join(_differences(PRESETS[closest], shapes)[1])
    raise CheckpointMismatchError(f"{path}: the checkpoint's {len(shapes)} variables match no preset; the closest "
                                  f"is {closest} ({differs}); convert it with wave-unet-convert --config_json")
  named = released_name(path)
  if named in matching:
    return named, None
  if len(matching) == 1:
    return matching[0], None
  others = ", ".join(f"{n} ({PRESETS[n].sample_rate} Hz)" for n in matching[1:])
  return matching[0], (f"{path}: the variables fit {matching[0]} ({PRESETS[matching[0]].sample_rate} Hz) and "
                       f"{others}; the name does not say which, so {matching[0]} is used (name the folder as "
                       f"released, e.g. {next(o for o, p in ORIGINAL_NAMES.items() if p == matching[-1])}/, "
                       f"or convert with wave-unet-convert --preset)")
