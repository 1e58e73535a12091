"""The loss, the optimizer and one training step, as the original's ``Training.py``, on every backend."""

import keras

from wave_unet_tf.config import Config


def per_example_loss(targets, estimates, source_names):
  """Mean over sources of each source's mean squared error: ``[batch]``.

  Averaged over a batch this is the original's loss: ``sum_s mean((target_s - estimate_s)^2) / num_sources``.
  """
  ops = keras.ops
  errors = [ops.mean(ops.square(ops.cast(targets[s], "float32") - ops.cast(estimates[s], "float32")), axis=(1, 2))
            for s in source_names]
  return sum(errors[1:], errors[0]) / float(len(source_names))


def batch_loss(source_names, global_batch_size):
  """``loss_fn(targets, estimates)``: the batch's summed loss over the *global* batch size, so that the loss
  and gradients replicas add up equal those of one device seeing the whole batch."""
  def loss_fn(targets, estimates):
    return keras.ops.sum(per_example_loss(targets, estimates, source_names)) / global_batch_size
  return loss_fn


def make_optimizer(config: Config, learning_rate: float = None) -> keras.optimizers.Optimizer:
  """Adam with TF1's defaults (epsilon 1e-8, not Keras' 1e-7), as the original's ``AdamOptimizer``.

  The learning rate is a variable so the fine-tuning stage can lower it in place.
  """
  optimizer = keras.optimizers.Adam(learning_rate=config.learning_rate if learning_rate is None else learning_rate,
                                    beta_1=config.adam_beta_1, beta_2=config.adam_beta_2,
                                    epsilon=config.adam_epsilon)
  if keras.mixed_precision.global_policy().name == "mixed_float16":
    optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
  return optimizer


def make_train_step(model, optimizer, devices, global_batch_size, jit_compile=False):
  """The training step of ``devices`` (`wave_unet_tf.backends.training.Devices`, a ``tf.distribute.Strategy``
  or None for one device of the current backend): ``step(batch)`` returns the global loss."""
  from wave_unet_tf.backends import training as backend
  loss_fn = batch_loss(model.wave_unet_config.source_names, global_batch_size)
  return backend.devices_for(devices).train_step(model, optimizer, loss_fn, jit_compile=jit_compile)
