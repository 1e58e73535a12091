"""The named pretrained models (placeholder interface: the real catalogue replaces this file at merge).

Names resolve through `wave_unet_tf.model_sources.load_model`.
"""

DEFAULT_MODEL = "M5-HighSR"
NAMES = ("M5-HighSR", "M4", "M6")  # canonical names, the default first


def is_name(text) -> bool:
  """Whether ``text`` is one of the catalogue's names."""
  return text in NAMES
