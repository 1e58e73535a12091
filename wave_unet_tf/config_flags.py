"""absl flags for every `Config` field, so any preset value can be overridden on the command line.

Order of precedence: preset -> ``--config_json`` -> flags (flagfiles are flags).
"""

import dataclasses
import typing

from absl import flags

from wave_unet_tf.config import Config, get_preset, preset_names, read_json_config

_FIELD_HELP = {
    name.strip(): text.strip() for name, text in
    (line.split(":", 1) for line in Config.__doc__.split("Attributes:")[1].split("\n  ") if ":" in line)}


def define_config_flags(default_preset=None):
  """``--preset``, ``--config_json`` and one flag per config field (default: the preset's value)."""
  flags.DEFINE_string("preset", default_preset, f"Model preset: {', '.join(preset_names())}.")
  flags.DEFINE_string("config_json", None, "A JSON config (this project's keys or the original Config.py's), "
                                           "applied over the preset.")
  for field in dataclasses.fields(Config):
    help_text = " ".join(_FIELD_HELP.get(field.name, field.name).split()) + " (default: the preset's)"
    if field.type is bool:
      flags.DEFINE_boolean(field.name, None, help_text)
    elif field.type is int:
      flags.DEFINE_integer(field.name, None, help_text)
    elif field.type is float:
      flags.DEFINE_float(field.name, None, help_text)
    elif typing.get_origin(field.type) is tuple:
      flags.DEFINE_list(field.name, None, help_text)
    else:
      flags.DEFINE_string(field.name, None, help_text)


def config_from_flags(values=flags.FLAGS, base: Config = None) -> Config:
  """The resolved config: the preset (or ``base``, e.g. the config of a model to fine-tune), then
  ``--config_json``, then every config flag that was given."""
  if base is None and not values.preset and not values.config_json:
    raise ValueError(f"give --preset ({', '.join(preset_names())}) or --config_json")
  config = base if base is not None else get_preset(values.preset) if values.preset else Config()
  if values.config_json:
    config = config.merge(read_json_config(values.config_json))
  # Flags carry the fields' names, so a validation error names the flag too.
  return config.replace(**{f.name: values[f.name].value for f in dataclasses.fields(Config)
                           if values[f.name].value is not None})
