"""The model, pure JAX/Flax: the GRU recurrence, pooling, the encoder, loss heads, augmentation.

Nothing here reads files or imports the data, training, inference or evaluation layers.
"""
