"""From a checkpoint to embeddings, without the training code: load an encoder, embed, export."""
