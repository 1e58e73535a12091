"""What training must know of the backend, behind one small interface: `Devices`.

The trainer (`wave_unet_tf.training.trainer`) runs the same recipe on every backend; it asks its `Devices`
for a scope to build the model and optimizer in, a stream of batches fit for the step, the training step
itself and a forward pass for validation. Per backend:

- TensorFlow: a ``tf.function`` over a ``tf.distribute`` strategy (one device, mirrored, multi-worker, TPU),
  each replica's forward and backward pass compiled with XLA when ``jit_compile``.
- JAX: one ``jax.jit`` of a stateless step (``model.stateless_call``, ``jax.value_and_grad``,
  ``optimizer.stateless_apply``); the weights live in the step between calls and go back into the Keras
  variables at `Step.sync`. ``mirrored`` is ``keras.distribution.DataParallel`` over the local devices.
- PyTorch: an eager step (``loss.backward()``, ``optimizer.apply``), as Keras' own trainer runs it; one
  device.

The loss is the caller's: ``loss_fn(targets, estimates)`` returns the batch's summed loss over the global
batch size, so that replicas' gradients add up to one device's.
"""

import contextlib

import numpy as np

from wave_unet_tf import backends
from wave_unet_tf.training.settings import STRATEGIES  # the --strategy choices, defined once


class StrategyError(ValueError):
  """A --strategy the current backend cannot run."""


def keep_tensorflow_off_accelerators() -> None:
  """Under JAX or PyTorch, TensorFlow (the input pipeline, TensorBoard) stays on the CPU and leaves the GPU's
  memory to the backend. Call it before TensorFlow touches its devices; a no-op under TensorFlow."""
  if backends.is_tensorflow():
    return
  import tensorflow as tf
  try:
    tf.config.set_visible_devices([], "GPU")
  except (RuntimeError, ValueError):  # devices already initialised (nothing placed on a GPU by us, then)
    pass


def split_cpu(num_devices: int) -> None:
  """``--num_cpu_devices``: the CPU as that many devices, so ``mirrored`` can be tried without GPUs. Under
  TensorFlow, logical devices; under JAX, XLA's forced host devices (before JAX starts)."""
  if num_devices <= 1:
    return
  if backends.name() == "jax":
    import os
    import sys
    flag = f"--xla_force_host_platform_device_count={num_devices}"
    if "jax" not in sys.modules and flag not in os.environ.get("XLA_FLAGS", ""):
      os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flag).strip()
  elif backends.is_tensorflow():
    from wave_unet_tf.training import strategy as strategies
    strategies.split_cpu(num_devices)


def make_devices(strategy: str = "default", tpu: str = None) -> "Devices":
  """The `Devices` for ``--strategy`` under the current backend; `StrategyError` (one line) for a strategy
  the backend lacks."""
  name = backends.name()
  if strategy not in STRATEGIES:
    raise StrategyError(f"--strategy={strategy!r}: must be one of {', '.join(STRATEGIES)}")
  if name == "tensorflow":
    from wave_unet_tf.training import strategy as strategies
    return TensorFlowDevices(strategies.make_strategy(strategy, tpu))
  if name == "jax":
    if strategy in ("multi_worker", "tpu"):
      raise StrategyError(f"--strategy={strategy} runs on the TensorFlow backend only (KERAS_BACKEND=jax now); "
                          f"under JAX use --strategy=mirrored (keras.distribution.DataParallel over the local "
                          f"devices)")
    return JaxDevices(data_parallel=strategy == "mirrored")
  if name == "torch":
    if strategy != "default":
      raise StrategyError(f"--strategy={strategy}: the torch backend trains on one device; use "
                          f"KERAS_BACKEND=jax or tensorflow for data-parallel training")
    return TorchDevices()
  raise StrategyError(f"KERAS_BACKEND={name}: training runs on {', '.join(backends.NAMES)}")


def devices_for(strategy=None) -> "Devices":
  """``strategy`` as `Devices`: None (one device of the current backend), a ``tf.distribute.Strategy``, or
  `Devices` already."""
  if isinstance(strategy, Devices):
    return strategy
  if strategy is None:
    return make_devices("default")
  return TensorFlowDevices(strategy)


class Step:
  """One training step: ``step(batch)`` returns the loss (a scalar of the backend); `sync` puts the weights
  back into the model's and optimizer's variables (before they are read: checkpoints, validation)."""

  def __call__(self, batch):
    raise NotImplementedError

  def sync(self) -> None:
    pass


class Devices:
  """Where and how the model trains; see the module docstring."""

  name = "default"
  replicas = 1
  chief = True  # this process writes checkpoints, logs and models
  worker = 0

  def scope(self):
    """Build the model and optimizer in this scope (their variables then live on every replica)."""
    return contextlib.nullcontext()

  def check_batch_size(self, global_batch_size) -> None:
    """`StrategyError` (one line) for a global batch the devices cannot split."""

  def batches(self, make_dataset, global_batch_size):
    """Batches for `train_step` from ``make_dataset(pipeline_id, batch_size)`` (a ``tf.data.Dataset``)."""
    return make_dataset(0, global_batch_size).as_numpy_iterator()

  def train_step(self, model, optimizer, loss_fn, jit_compile=True) -> Step:
    raise NotImplementedError

  def predict(self, model, jit_compile=True):
    """``predict(mix)``: the model's estimates (``training=False``) as numpy arrays by source."""
    raise NotImplementedError


# -- TensorFlow -------------------------------------------------------------------------------------------------


class TensorFlowDevices(Devices):

  def __init__(self, strategy):
    from wave_unet_tf.training import strategy as strategies
    self.strategy = strategy
    self.name = type(strategy).__name__
    self.replicas = strategy.num_replicas_in_sync
    self.chief = strategies.is_chief(strategy)
    self.worker = strategies.worker_id(strategy)

  def scope(self):
    return self.strategy.scope()

  def batches(self, make_dataset, global_batch_size):
    """On one machine every replica gets its slice of the same global batch, so the run equals a one-device
    run at that batch size; multi-worker runs give each worker its own stream (its own seed) instead of having
    every worker assemble every batch."""
    import tensorflow as tf
    if isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy):
      return iter(self.strategy.distribute_datasets_from_function(
          lambda context: make_dataset(context.input_pipeline_id,
                                       context.get_per_replica_batch_size(global_batch_size))))
    return iter(self.strategy.experimental_distribute_dataset(make_dataset(0, global_batch_size)))

  def train_step(self, model, optimizer, loss_fn, jit_compile=True) -> Step:
    return _TensorFlowStep(model, optimizer, loss_fn, self.strategy, jit_compile)

  def predict(self, model, jit_compile=True):
    import tensorflow as tf
    forward = tf.function(lambda mix: model(mix, training=False))
    return lambda mix: {k: v.numpy() for k, v in forward(mix).items()}


class _TensorFlowStep(Step):
  """A ``tf.function`` over a distributed batch ``(mix, {source: target})`` returning the global loss.
  ``jit_compile`` compiles each replica's forward and backward pass with XLA (the optimizer update stays
  outside, where strategies aggregate gradients)."""

  def __init__(self, model, optimizer, loss_fn, strategy, jit_compile):
    import tensorflow as tf
    if not optimizer.built:
      with strategy.scope():  # slots are created eagerly, as mirrored variables, not inside a replica context
        optimizer.build(model.trainable_variables)

    @tf.function(jit_compile=jit_compile)
    def loss_and_gradients(mix, targets):
      with tf.GradientTape() as tape:
        loss = loss_fn(targets, model(mix, training=True))
        scaled = optimizer.scale_loss(loss)  # the loss scale of mixed_float16; a no-op otherwise
      return loss, tape.gradient(scaled, model.trainable_variables)

    def replica_step(mix, targets):
      loss, gradients = loss_and_gradients(mix, targets)
      optimizer.apply_gradients(zip(gradients, model.trainable_variables))
      return loss

    @tf.function
    def step(batch):
      mix, targets = batch
      losses = strategy.run(replica_step, args=(mix, targets))
      return strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    self._step = step

  def __call__(self, batch):
    return self._step(batch)


# -- JAX --------------------------------------------------------------------------------------------------------


class JaxDevices(Devices):

  def __init__(self, data_parallel=False):
    import jax
    import keras
    self.devices = jax.devices()
    self.distribution = keras.distribution.DataParallel(devices=self.devices) if data_parallel else None
    self.name = "DataParallel" if data_parallel else "default"
    self.replicas = len(self.devices) if data_parallel else 1

  def scope(self):
    return self.distribution.scope() if self.distribution else contextlib.nullcontext()

  def check_batch_size(self, global_batch_size):
    if global_batch_size % self.replicas:
      raise StrategyError(f"--batch_size: a batch of {global_batch_size} does not split evenly over "
                          f"{self.replicas} devices; give a multiple of {self.replicas}")

  def batches(self, make_dataset, global_batch_size):
    """The numpy stream, each batch sent to the devices while the step before it runs."""
    host = super().batches(make_dataset, global_batch_size)

    def ahead():
      ready = None
      for batch in host:
        upcoming = self.put_batch(batch)  # queued now, copied while the step on ``ready`` computes
        if ready is not None:
          yield ready
        ready = upcoming
      if ready is not None:
        yield ready
    return ahead()

  def put_batch(self, batch):
    mix, targets = batch
    return self.put(mix), {k: self.put(v) for k, v in targets.items()}

  def put(self, value):
    """A host array onto the devices: split along the batch under DataParallel (copied to each device when
    it does not split evenly, as a validation set's last batch). Arrays already there stay."""
    import jax
    import keras
    if isinstance(value, jax.Array):
      return value
    value = np.asarray(value)
    if self.distribution is None:
      return jax.device_put(value)
    if value.shape[0] % self.replicas:
      layout = keras.distribution.TensorLayout([None] * value.ndim, self.distribution.device_mesh)
    else:
      layout = self.distribution.get_data_layout(value.shape)
    return keras.distribution.distribute_tensor(value, layout)

  def train_step(self, model, optimizer, loss_fn, jit_compile=True) -> Step:
    return _JaxStep(model, optimizer, loss_fn, self, jit_compile)

  def predict(self, model, jit_compile=True):
    import jax

    def forward(trainable, non_trainable, mix):
      return model.stateless_call(trainable, non_trainable, mix, training=False)[0]

    compiled = jax.jit(forward) if jit_compile else forward

    def predict(mix):
      estimates = compiled([v.value for v in model.trainable_variables],
                           [v.value for v in model.non_trainable_variables], self.put(mix))
      return {k: np.asarray(v) for k, v in estimates.items()}
    return predict


class _JaxStep(Step):

  def __init__(self, model, optimizer, loss_fn, devices, jit_compile):
    import jax
    import keras
    if not optimizer.built:
      with devices.scope():
        optimizer.build(model.trainable_variables)
    self.devices = devices
    self.variables = (model.trainable_variables, model.non_trainable_variables, optimizer.variables)

    def loss_and_updates(trainable, non_trainable, optimizer_values, mix, targets):
      estimates, non_trainable = model.stateless_call(trainable, non_trainable, mix, training=True)
      loss = loss_fn(targets, estimates)
      # mixed_float16's loss scale is an optimizer variable: read it from the values this step holds.
      with keras.StatelessScope(state_mapping=list(zip(optimizer.variables, optimizer_values))):
        scaled = optimizer.scale_loss(loss)
      return scaled, (loss, non_trainable)

    gradient = jax.value_and_grad(loss_and_updates, has_aux=True)

    def step(state, mix, targets):
      trainable, non_trainable, optimizer_values = state
      (_, (loss, non_trainable)), grads = gradient(trainable, non_trainable, optimizer_values, mix, targets)
      trainable, optimizer_values = optimizer.stateless_apply(optimizer_values, grads, trainable)
      return loss, (trainable, non_trainable, optimizer_values)

    # Donating the old state lets the device update the weights in place (CPUs cannot, and would warn).
    self.donate = jit_compile and all(d.platform != "cpu" for d in devices.devices)
    self._step = jax.jit(step, donate_argnums=(0,) if self.donate else ()) if jit_compile else step
    self.state = None

  def __call__(self, batch):
    import jax.numpy as jnp
    if self.state is None:  # the variables' values, copied when the step will donate them
      self.state = tuple([jnp.copy(v.value) if self.donate else v.value for v in group] for group in self.variables)
    mix, targets = self.devices.put_batch(batch)
    loss, self.state = self._step(self.state, mix, targets)
    return loss

  def sync(self):
    if self.state is None:
      return
    for group, values in zip(self.variables, self.state):
      for variable, value in zip(group, values):
        variable.assign(value)
    self.state = None  # the next step starts from the variables (a restore may have changed them)


# -- PyTorch ----------------------------------------------------------------------------------------------------


class TorchDevices(Devices):

  def train_step(self, model, optimizer, loss_fn, jit_compile=True) -> Step:
    return _TorchStep(model, optimizer, loss_fn)

  def predict(self, model, jit_compile=True):
    import keras
    import torch

    def predict(mix):
      with torch.no_grad():
        estimates = model(keras.ops.convert_to_tensor(np.asarray(mix)), training=False)
      return {k: keras.ops.convert_to_numpy(v) for k, v in estimates.items()}
    return predict


class _TorchStep(Step):
  """Eager, as Keras' own torch trainer (KerasHub runs torch models without ``jit_compile`` too)."""

  def __init__(self, model, optimizer, loss_fn):
    if not optimizer.built:
      optimizer.build(model.trainable_variables)
    self.model, self.optimizer, self.loss_fn = model, optimizer, loss_fn

  def __call__(self, batch):
    import keras
    import torch
    mix, targets = batch
    mix = keras.ops.convert_to_tensor(np.asarray(mix))
    targets = {k: keras.ops.convert_to_tensor(np.asarray(v)) for k, v in targets.items()}
    self.model.zero_grad()
    loss = self.loss_fn(targets, self.model(mix, training=True))
    self.optimizer.scale_loss(loss).backward()
    variables = self.model.trainable_variables
    with torch.no_grad():
      self.optimizer.apply([v.value.grad for v in variables], variables)
    return loss.detach()
