r"""wave-unet-evaluate: separate a MUSDB18 subset and score it with museval (BSS Eval v4, 1 s windows).

  wave-unet-evaluate --model M5-HighSR --musdb_root data/musdb18 --subset test \
      --output_dir evaluation/M5-HighSR --jobs 2 --baseline

writes ``<output_dir>/<subset>/<track>.json`` per track (museval's layout; tracks already scored are
skipped, so re-running resumes), then prints the summary and saves ``summary.csv`` and ``summary.json``.
"""

from absl import flags

from wave_unet_tf import cli, precision

cli.define_model_flags()
flags.DEFINE_string("musdb_root", None, "MUSDB18 (.stem.mp4), MUSDB18-HQ or a folder in its layout.")
flags.DEFINE_bool("is_wav", None, "The root is in MUSDB18-HQ layout (<subset>/<track>/<source>.wav); default: "
                  "detected, as in training.")
flags.DEFINE_enum("subset", "test", ["train", "test"], "MUSDB subset.")
flags.DEFINE_enum("split", None, ["train", "valid"], "Part of the train subset, split as training splits it.")
flags.DEFINE_enum("split_mode", "official", ["official", "random"], "How --split divides the train subset, as in "
                  "training: musdb's official validation list, or the original's random 75/25 (seed 1337).")
flags.DEFINE_string("output_dir", "evaluation", "Where the per-track JSON and the summary go.")
flags.DEFINE_integer("jobs", 1, "Processes scoring tracks in parallel.", lower_bound=1)
flags.DEFINE_bool("baseline", False, "Also score the mixture as every source's estimate.")
flags.DEFINE_list("tracks", None, "Only these track names.")
flags.DEFINE_float("window_seconds", None, "Output audio per forward pass (default: the separator's).")
flags.DEFINE_alias("frame_seconds", "window_seconds")  # the flag's first name
flags.DEFINE_integer("batch_size", None, "Windows per forward pass (default: the separator's).", lower_bound=1)
precision.define_flag()
flags.DEFINE_string("compile_cache", cli.DEFAULT_COMPILE_CACHE, "Folder keeping XLA-compiled forward passes "
                    "between runs ('' for none).")
flags.mark_flag_as_required("musdb_root")
FLAGS = flags.FLAGS
HELP_GROUPS = (
    ("Model", ("model", "model_repo", "precision")),
    ("Data", ("musdb_root", "is_wav", "subset", "split", "split_mode", "tracks")),
    ("Output", ("output_dir", "baseline")),
    ("Speed and memory (never the result)", ("jobs", "window_seconds", "frame_seconds", "batch_size",
                                             "compile_cache")),
)


def main(argv):
  if len(argv) > 1:
    raise cli.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if FLAGS.split and FLAGS.subset != "train":
    raise cli.UsageError("--split applies to --subset=train only")
  cli.fetch_named_model(FLAGS.model)
  cli.start_tensorflow(FLAGS.compile_cache)
  from wave_unet_tf.evaluation import evaluate
  from wave_unet_tf.evaluation.tracks import open_tracks
  # Fail on an empty root before spending seconds on loading the model.
  open_tracks(FLAGS.musdb_root, FLAGS.subset, FLAGS.split, FLAGS.is_wav, FLAGS.tracks, FLAGS.split_mode)
  evaluate(FLAGS.model, FLAGS.musdb_root, subset=FLAGS.subset, output_dir=FLAGS.output_dir, split=FLAGS.split,
           is_wav=FLAGS.is_wav, jobs=FLAGS.jobs, baseline=FLAGS.baseline, track_names=FLAGS.tracks,
           window_seconds=FLAGS.window_seconds, batch_size=FLAGS.batch_size, split_mode=FLAGS.split_mode,
           precision=FLAGS.precision)


def run():
  cli.run(main, HELP_GROUPS)


if __name__ == "__main__":
  run()
