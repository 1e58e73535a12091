"""tf.distribute strategies by name, and which worker writes files."""

import os

import tensorflow as tf

from wave_unet_tf.training.settings import STRATEGIES


def split_cpu(num_devices: int) -> None:
  """Splits the CPU into ``num_devices`` logical devices, so ``mirrored`` can be tried without GPUs.

  Must run before TensorFlow initialises its devices.
  """
  if num_devices > 1:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * num_devices)


def make_strategy(name: str, tpu_address: str = None) -> tf.distribute.Strategy:
  """``default`` (one device), ``mirrored`` (all local GPUs, else the logical CPUs), ``multi_worker``
  (MultiWorkerMirroredStrategy from ``TF_CONFIG``) or ``tpu`` (TPUStrategy; Colab finds its TPU itself)."""
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "mirrored":
    gpus = tf.config.list_logical_devices("GPU")
    devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices)
  if name == "multi_worker":
    if "TF_CONFIG" not in os.environ:
      raise ValueError("--strategy=multi_worker needs the TF_CONFIG environment variable (cluster and task)")
    return tf.distribute.MultiWorkerMirroredStrategy()
  if name == "tpu":
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_address or "")
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)
  raise ValueError(f"--strategy={name!r}: must be one of {', '.join(STRATEGIES)}")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """Whether this process writes checkpoints, logs and models (the only one, but in multi-worker runs)."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.task_type or isinstance(strategy, tf.distribute.TPUStrategy):
    return True
  if resolver.task_type == "chief":
    return True
  has_chief = "chief" in resolver.cluster_spec().as_dict()
  return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def worker_id(strategy: tf.distribute.Strategy) -> int:
  resolver = getattr(strategy, "cluster_resolver", None)
  return int(resolver.task_id) if resolver is not None and resolver.task_id is not None else 0
