"""Training: the original's recipe (MSE, Adam, early stopping, fine-tuning stage) on tf.distribute."""
