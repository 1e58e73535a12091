"""Training data: finding tracks (`tracks`), decoding them once into a cache (`cache`), streaming excerpts and
validation tiles through tf.data (`pipeline`), and a synthetic dataset for quick runs and tests (`toy`).

Importing this package does not import TensorFlow; `pipeline` does.
"""
