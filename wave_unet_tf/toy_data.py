r"""wave-unet-toy-data: write a small synthetic dataset in MUSDB18-HQ layout (quickstart, notebooks, tests).

  wave-unet-toy-data --output_dir data/toy --num_tracks 8 --seconds 10 --seed 0
  wave-unet-train --preset M4 --musdb_root data/toy ...
"""

from absl import flags

from wave_unet_tf import cli

flags.DEFINE_string("output_dir", None, "Folder to write train/<track>/ and test/<track>/ into.")
flags.DEFINE_integer("num_tracks", 8, "Songs in train/.", lower_bound=1)
flags.DEFINE_integer("num_test_tracks", None, "Songs in test/ (default: a quarter of --num_tracks, at least 1).",
                     lower_bound=0)
flags.DEFINE_float("seconds", 10.0, "Length of each song in seconds.", lower_bound=0.01)
flags.DEFINE_integer("seed", 0, "Same seed, same files.")
flags.mark_flags_as_required(["output_dir"])
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise cli.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  from wave_unet_tf.data.toy import write_toy_dataset
  folders = write_toy_dataset(FLAGS.output_dir, num_tracks=FLAGS.num_tracks, seconds=FLAGS.seconds,
                              seed=FLAGS.seed, num_test_tracks=FLAGS.num_test_tracks)
  print(f"wrote {len(folders)} toy tracks of {FLAGS.seconds:g} s to {FLAGS.output_dir} (train/, test/; "
        f"mixture, vocals, drums, bass, other .wav, 44.1 kHz stereo)")


def run():
  cli.run(main)


if __name__ == "__main__":
  run()
