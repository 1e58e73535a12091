r"""wave-unet-models: the paper's pretrained models, by name; ``--download`` fetches them ahead.

  wave-unet-models                             # the catalogue: names, presets, sources, the paper's SDR, cached?
  wave-unet-models --download=M5-HighSR,M6     # fetch (and convert) ahead: container images, Colab
  WAVE_UNET_MODEL_REPO=/media/usb/models.zip wave-unet-models --download=all     # offline, from a copy

The original project's released checkpoints, fetched once into the model cache and converted once; every
command's --model takes these names (wave-unet-separate uses M5-HighSR without one).
"""

import sys

from absl import flags

from wave_unet_tf import catalogue, cli

flags.DEFINE_list("download", None, f"Fetch these models into the cache now ({', '.join(catalogue.NAMES)}, their "
                  f"original names, or 'all').")
flags.DEFINE_bool("convert", True, "With --download: also convert each checkpoint once (as its first use would).")
cli.define_model_repo_flag()
FLAGS = flags.FLAGS
HELP_GROUPS = (("Download", ("download", "convert", "model_repo")),)


def _names(requested):
  names = []
  for name in requested:
    if name.lower() == "all":
      names.extend(catalogue.NAMES)
    elif catalogue.is_name(name):
      names.append(catalogue.get(name).name)
    else:
      raise cli.UsageError(f"--download={name}: not a pretrained model (one of {', '.join(catalogue.all_names())}, "
                           f"or all)")
  return list(dict.fromkeys(names))


def table():
  """The catalogue as printed: one row per model."""
  from wave_unet_tf import pretrained

  header = ("name", "original name", "preset", "sources", "rate", "paper's SDR, median dB", "cached")
  rows = []
  for entry, folder, archive in pretrained.listing():
    sdr = ", ".join(f"{source} {value:.2f}" for source, value in entry.sdr.items())
    cached = folder or (f"archive only: {archive}" if archive else "no")
    name = entry.name + (" (default)" if entry.name == catalogue.DEFAULT_MODEL else "")
    rows.append((name, entry.original_name, entry.preset, ", ".join(entry.sources), str(entry.sample_rate), sdr,
                 cached))
  widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
  lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in (header, *rows)]
  source = pretrained.repo() or "the catalogue's URL"
  lines.append(f"archive: {source}" + ("" if pretrained.repo() else f" ({catalogue.ENTRIES[0].url})"))
  lines.append(f"cache: {pretrained.released_dir()}")
  return "\n".join(lines)


def main(argv):
  if len(argv) > 1:
    raise cli.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not FLAGS.download:
    print(table())
    return
  from wave_unet_tf import pretrained
  names = _names(FLAGS.download)
  for name in names:
    folder = pretrained.fetch(name)
    print(f"{name}: {folder}", flush=True)
  if FLAGS.convert:
    cli.start_tensorflow()
    for name in names:
      pretrained.load(name)
    print(f"converted: {', '.join(names)}", file=sys.stderr)


def run():
  cli.run(main, HELP_GROUPS)


if __name__ == "__main__":
  run()
