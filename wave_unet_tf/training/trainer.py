"""The original's training recipe, resumable at any point.

Stage 0 trains with the config's batch size and learning rate, validating after every epoch of
``steps_per_epoch`` steps, until ``patience`` epochs bring no better validation loss. Stage 1 (the paper's
fine-tuning, if ``config.fine_tune``) restarts from the best checkpoint with the batch times
``fine_tune_batch_factor`` and ``fine_tune_learning_rate``, with the same early stopping. Every counter lives
in the checkpoint, so running the same command again continues where the last run stopped, on any Keras
backend: the recipe is this module's, and what differs per backend (the step, the devices, the batches it
takes) is `wave_unet_tf.backends.training`'s.
"""

import math
import os
import time

import keras
import numpy as np
import tensorflow as tf
import tqdm

from wave_unet_tf import model_cache, runtime
from wave_unet_tf.backends import training as backend
from wave_unet_tf.config import Config
from wave_unet_tf.data import pipeline, tracks as track_finder
from wave_unet_tf.model_sources import BEST_MODEL
from wave_unet_tf.model.wave_unet import build_model
from wave_unet_tf.training import checkpoints, legacy, run_folder, settings, step as steps, warm_start
from wave_unet_tf.training.checkpoints import CheckpointFolder, check_best_model, save_best_model
from wave_unet_tf.training.settings import DataOptions, RunOptions  # noqa: F401  (the trainer's API)


class TrainingError(RuntimeError):
  """Training cannot go on (NaN loss, no validation data)."""


class _State:
  """The counters that make a run resumable: plain numbers on the host, saved in each checkpoint."""

  def __init__(self):
    self.step = 0
    self.epoch = 0
    self.stage = 0
    self.stage_start_epoch = 0
    self.worse_epochs = 0
    self.best_loss = math.inf

  def as_dict(self):
    return {k: (None if isinstance(v, float) and math.isinf(v) else v) for k, v in vars(self).items()}

  def update(self, saved: dict):
    for name in vars(self):
      if name in saved:
        value = saved[name]
        setattr(self, name, math.inf if value is None else type(getattr(self, name))(value))


class Trainer:
  """Trains ``config`` into ``model_dir`` under ``strategy``; see the module docstring for the recipe."""

  def __init__(self, config: Config, model_dir: str, data: DataOptions, run: RunOptions = RunOptions(),
               strategy=None, init_model=None):
    """``strategy``: a ``tf.distribute.Strategy`` (TensorFlow), `wave_unet_tf.backends.training.Devices`, or
    None for one device of the current backend. ``init_model``: the `WaveUNet` that ``run.init_from`` names,
    when the caller loaded it already (to take its config); otherwise the trainer loads it, and only for a
    folder with no checkpoint to resume."""
    backend.keep_tensorflow_off_accelerators()  # tf.data and TensorBoard only, under JAX or PyTorch
    self.config = config
    self.model_dir = model_dir
    self.data = data
    self.run_options = run
    self.devices = backend.devices_for(strategy)
    self.strategy = getattr(self.devices, "strategy", None)  # TensorFlow's, for callers that look at it
    self.chief = self.devices.chief
    warm = bool(run.init_from) and not warm_start.has_checkpoint(model_dir)
    notices = []
    if warm:  # checked before the folder is made, so that a refused change leaves nothing behind
      init_model = init_model or warm_start.load_source(run.init_from)
      notices = warm_start.check_config(init_model.wave_unet_config, config, run.init_from)
    for batch_size, _ in self.stages():
      self.devices.check_batch_size(batch_size)
    self.freeze = warm_start.parse_freeze(run.freeze)
    if self.freeze:
      warm_start.frozen_layers(config, self.freeze)  # an unknown name, before anything is written
    run_folder.prepare(model_dir, config, write=self.chief)
    resuming = settings.check_resumable(model_dir, data, run)
    if self.chief:
      for notice in notices:
        runtime.notice(notice)
    self.train_tracks, self.valid_tracks = self._find_tracks()

    keras.utils.set_random_seed(run.seed)
    with self.devices.scope():
      self.model = self._new_model()
      self.optimizer = steps.make_optimizer(config)
      self.optimizer.build(self.model.trainable_variables)  # so a checkpoint restores the slots too
    self.learning_rate = config.learning_rate
    self.state = _State()  # plain host numbers: every worker counts the same steps itself
    self._step = None  # the training step of the current stage
    # Non-chief workers keep their own copy, in a scratch folder.
    folder = model_dir if self.chief else os.path.join(model_dir, f".worker_{self.devices.worker}")
    # Two of each kept, so that a damaged latest one leaves the one before (see checkpoints.py).
    self.checkpoints = CheckpointFolder(os.path.join(folder, "checkpoints"))
    self.best = CheckpointFolder(os.path.join(folder, "best"))
    init = None
    if self._restore():
      if self.chief:
        check_best_model(os.path.join(model_dir, BEST_MODEL), self._rebuild_best_model)
        tqdm.tqdm.write(f"resuming {model_dir} at step {self.state.step}, epoch {self.state.epoch}, "
                        f"stage {self.state.stage}")
    elif run.init_from:
      init_model = init_model or warm_start.load_source(run.init_from)  # a folder of damaged checkpoints only
      warm_start.copy_weights(init_model, self.model)
      init = warm_start.Source(run.init_from, model_cache.model_digest(init_model)).to_dict()
      if self.chief:
        tqdm.tqdm.write(f"starting from --init_from={run.init_from} (weights sha256 {init['weights_sha256'][:16]}): "
                        f"step 0, a fresh optimizer and early stopping"
                        + (f"; frozen: {', '.join(self.frozen)}" if self.frozen else ""))
    if self.chief and not resuming:
      settings.save(model_dir, data, run, init=init)
    logs = os.path.join(model_dir, "logs")
    self.train_writer = tf.summary.create_file_writer(os.path.join(logs, "train")) if self.chief else None
    self.valid_writer = tf.summary.create_file_writer(os.path.join(logs, "valid")) if self.chief else None
    self.predict = self.devices.predict(self.model, jit_compile=run.jit_compile)

  # -- checkpoints --------------------------------------------------------------------------------------------

  def _restore(self):
    """Restores the newest readable checkpoint (model, optimizer, counters); its path, or None."""
    def apply(path, arrays, info):
      self.state.update(checkpoints.assign(path, arrays, info, self.model, self.optimizer))
    path = self.checkpoints.restore(apply)
    if path is None:  # a run folder of an earlier version: TensorFlow reads it, and the run saves the new format
      path, counters = legacy.restore(self.checkpoints.directory, self.model, self.optimizer)
      if path:
        self.state.update(counters)
        runtime.notice(f"{path} is a TensorFlow checkpoint of an earlier version; resuming from it, and saving "
                       f"checkpoints as ckpt-<step>{checkpoints.SUFFIX} from now on")
        if not self.best.latest:
          model, optimizer = self._spare()
          best, _ = legacy.restore(self.best.directory, model, optimizer, with_counters=False)
          if best:
            self.best.save(checkpoints.number(best), *checkpoints.snapshot(model, optimizer))
    return path

  def _save_checkpoint(self):
    self._save(self.checkpoints, (self.model, self.optimizer), counters=self.state.as_dict())

  def _save(self, folder, objects, counters=None):
    self._sync()
    model, optimizer = objects
    arrays, info = checkpoints.snapshot(model, optimizer, counters)
    folder.save(self.state.step, arrays, info)

  def _sync(self):
    if self._step is not None:
      self._step.sync()

  # -- the recipe ---------------------------------------------------------------------------------------------

  def stages(self):
    """(batch size, learning rate) per stage."""
    c = self.config
    first = (c.batch_size, c.learning_rate)
    return [first, (c.batch_size * c.fine_tune_batch_factor, c.fine_tune_learning_rate)] if c.fine_tune else [first]

  def train(self) -> dict:
    """Runs until both stages stopped early, ``max_epochs`` or ``max_steps``; returns a summary."""
    stages = self.stages()
    while self.state.stage < len(stages):
      batch_size, learning_rate = stages[self.state.stage]
      self._set_learning_rate(learning_rate)
      try:
        if not self._train_stage(batch_size):
          return self._summary(finished=False)
      finally:
        self._sync()  # the model's variables hold the trained weights, however the stage ended
        self._step = None
      self._next_stage()
    return self._summary(finished=True)

  def _train_stage(self, batch_size) -> bool:
    """Epochs of one stage until early stopping; False if ``max_steps`` interrupted it."""
    c, run = self.config, self.run_options
    self._step = train_step = steps.make_train_step(self.model, self.optimizer, self.devices, batch_size,
                                                    jit_compile=run.jit_compile)
    batches = self._training_batches(batch_size)
    while True:
      todo = c.steps_per_epoch - self._steps_done_in_epoch()
      if run.max_steps:
        todo = min(todo, max(run.max_steps - self.state.step, 0))
      if todo:
        self._run_steps(train_step, batches, todo, batch_size)
      if self._steps_done_in_epoch() < c.steps_per_epoch:
        self._save_checkpoint()
        if not os.path.exists(os.path.join(self.model_dir, BEST_MODEL)):
          self._save_best_model()  # stopped before the first validation: the latest model stands in
        return False  # max_steps reached within the epoch
      if self._end_epoch():
        return True

  def _steps_done_in_epoch(self):
    # Epochs are consecutive runs of steps_per_epoch steps, so the step counter says where we are.
    return self.state.step - self.state.epoch * self.config.steps_per_epoch

  def _run_steps(self, train_step, batches, count, batch_size):
    run = self.run_options
    epoch = self.state.epoch
    start = time.perf_counter()
    # Closed however the steps end, so that an error is a line of its own, not the end of the bar's.
    with tqdm.tqdm(total=count, desc=f"stage {self.state.stage} epoch {epoch}", unit="step",
                   disable=not self.chief, dynamic_ncols=True) as bar:
      for i in range(count):
        loss = float(train_step(next(batches)))
        self.state.step += 1
        step = self.state.step
        if not math.isfinite(loss):
          raise TrainingError(f"training loss is {loss} at step {step}; stopped without saving, the last good "
                              f"checkpoint {self.checkpoints.latest or '(none)'} is kept")
        bar.update()
        bar.set_postfix(loss=f"{loss:.5f}", steps_per_s=f"{(i + 1) / (time.perf_counter() - start):.2f}")
        if self.train_writer and (step % run.summary_every == 0 or i == 0):
          with self.train_writer.as_default(step=step):
            tf.summary.scalar("loss", loss)
            tf.summary.scalar("learning_rate", self.learning_rate)
            tf.summary.scalar("examples_per_s", (i + 1) * batch_size / (time.perf_counter() - start))
        if run.checkpoint_every and step % run.checkpoint_every == 0 and i < count - 1:
          self._save_checkpoint()

  def _end_epoch(self) -> bool:
    """Validates, updates early stopping, checkpoints; True when the stage is over."""
    loss = self.validate() if self.valid_tracks else None
    self.state.epoch += 1
    epoch, step = self.state.epoch, self.state.step
    if loss is None:  # no validation: the latest model is the best there is, and only max_epochs stops
      self._save_best_model()
      self._save_checkpoint()
      if self.chief:
        tqdm.tqdm.write(f"epoch {epoch}: done (no validation tracks)")
      return bool(self.config.max_epochs and epoch - self.state.stage_start_epoch >= self.config.max_epochs)
    improved = loss < self.state.best_loss
    if improved:
      self.state.best_loss = loss
      self.state.worse_epochs = 0
      self._save(self.best, (self.model, self.optimizer))
      self._save_best_model()
    else:
      self.state.worse_epochs += 1
    if self.valid_writer:
      with self.valid_writer.as_default(step=step):
        tf.summary.scalar("loss", loss)
        self._audio_summary()
      self.valid_writer.flush()
    self._save_checkpoint()
    if self.chief:
      tqdm.tqdm.write(f"epoch {epoch}: validation loss {loss:.6f}" + (" (best)" if improved else ""))
    stage_epochs = epoch - self.state.stage_start_epoch
    return (self.state.worse_epochs >= self.config.patience or
            bool(self.config.max_epochs and stage_epochs >= self.config.max_epochs))

  def _save_best_model(self):
    if self.chief:
      self._sync()
      save_best_model(self.model, os.path.join(self.model_dir, BEST_MODEL))

  def _spare(self):
    """A fresh model and optimizer of this run's shapes, to read a checkpoint into."""
    with self.devices.scope():
      model, optimizer = self._new_model(), steps.make_optimizer(self.config)
      optimizer.build(model.trainable_variables)
    return model, optimizer

  def _rebuild_best_model(self):
    """``(model, source)`` for a damaged best.keras: the best checkpoint, else (no validation yet, or none at
    all) the latest model, which is what best.keras then holds."""
    if self.best.latest:
      model, optimizer = self._spare()
      source = self.best.restore(lambda path, arrays, info: checkpoints.assign(path, arrays, info, model, optimizer))
      if source:
        return model, source
    return self.model, self.checkpoints.latest

  def _new_model(self):
    """A fresh model of the config with the ``--freeze`` parts untrainable (before an optimizer sees it)."""
    model = build_model(self.config)
    self.frozen = warm_start.freeze(model, self.freeze)
    return model

  def _next_stage(self):
    self.state.stage += 1
    self.state.worse_epochs = 0
    self.state.stage_start_epoch = self.state.epoch
    if self.state.stage < len(self.stages()) and self.best.latest and self.valid_tracks:
      # The fine-tuning stage starts from the best model so far, as the paper does.
      self.best.restore(lambda path, arrays, info: checkpoints.assign(path, arrays, info, self.model,
                                                                      self.optimizer))
    self._save_checkpoint()

  # -- data, validation and summaries -------------------------------------------------------------------------

  def _find_tracks(self):
    """``(training tracks, validation tracks)``: a split of ``musdb_root``'s training tracks, or all of them
    and those of ``validation_root``; no validation tracks for a dataset too small to split (said once)."""
    d = self.data
    find = lambda root, split: track_finder.find_tracks(root, self.config, subset="train", split=split,
                                                        is_wav=d.is_wav, split_mode=d.split_mode, strict=d.strict_data)
    if d.validation_root:
      return find(d.musdb_root, None), find(d.validation_root, None)
    train, valid = find(d.musdb_root, "train"), find(d.musdb_root, "valid")
    if not valid:
      runtime.notice(f"--musdb_root={d.musdb_root}: {len(train)} training track(s), too few to split; training "
                     f"without validation (no early stopping; best.keras is the latest model); give "
                     f"--validation_root to validate")
    return train, valid

  def _training_batches(self, global_batch_size):
    """A stream re-seeded from the current step so a resumed run goes on deterministically, as the
    backend's step takes it (`Devices.batches`: distributed for TensorFlow's strategies, numpy otherwise)."""
    step = self.state.step

    def dataset(pipeline_id, batch_size):
      seed = int(np.random.SeedSequence([self.run_options.seed, step, pipeline_id]).generate_state(1)[0])
      return pipeline.training_dataset(self.config, self.train_tracks, self.data.cache_dir, seed=seed,
                                       batch_size=batch_size, channel_swap=self.data.channel_swap,
                                       remix=self.data.remix, strict=self.data.strict_data)

    return self.devices.batches(dataset, global_batch_size)

  def _validation_batches(self):
    dataset = pipeline.validation_dataset(self.config, self.valid_tracks, self.data.cache_dir,
                                          batch_size=self.config.batch_size, strict=self.data.strict_data)
    if self.data.max_validation_batches:
      dataset = dataset.take(self.data.max_validation_batches)
    return dataset

  def validate(self) -> float:
    """Mean per-example loss over the validation tiles, ``training=False`` (as the original's ``Test.test``).

    Every worker computes it in full on its own copy of the weights, so early-stopping decisions agree.
    """
    self._sync()
    total, count = 0.0, 0
    for mix, targets in self._validation_batches().as_numpy_iterator():
      estimates = self.predict(mix)
      losses = np.mean([np.mean(np.square(targets[s] - estimates[s].astype(np.float32)), axis=(1, 2))
                        for s in self.config.source_names], axis=0)
      total += float(np.sum(losses, dtype=np.float64))
      count += int(losses.shape[0])
    if count == 0:
      raise TrainingError(f"--musdb_root={self.data.musdb_root}: the validation tracks gave no audio")
    return total / count

  def _audio_summary(self):
    """The first validation tile with some signal, separated, for TensorBoard's audio tab."""
    for mix, _ in self._validation_batches().take(8).as_numpy_iterator():
      energies = np.mean(np.square(mix), axis=(1, 2))
      index = int(np.argmax(energies))
      if float(energies[index]) > 0:
        break
    else:
      return
    estimates = self.predict(mix[index:index + 1])
    rate = self.config.sample_rate
    for source, audio in estimates.items():
      tf.summary.audio(f"separated/{source}", np.clip(audio.astype(np.float32), -1, 1), rate, max_outputs=1)
    frames = estimates[self.config.source_names[0]].shape[1]
    offset = (mix.shape[1] - frames) // 2
    tf.summary.audio("mixture", mix[index:index + 1, offset:offset + frames], rate, max_outputs=1)

  def _set_learning_rate(self, value):
    self.learning_rate = value
    getattr(self.optimizer, "inner_optimizer", self.optimizer).learning_rate.assign(value)

  def _summary(self, finished):
    return {"finished": finished, "step": self.state.step, "epoch": self.state.epoch,
            "stage": self.state.stage, "best_validation_loss": float(self.state.best_loss),
            "best_model": os.path.join(self.model_dir, BEST_MODEL)}
