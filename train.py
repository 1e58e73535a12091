"""Train a Wave-U-Net: ``python train.py --flagfile=flags/m5_highsr.cfg`` (see ``--helpfull``)."""

from wave_unet_tf.train import run

if __name__ == "__main__":
  run()
