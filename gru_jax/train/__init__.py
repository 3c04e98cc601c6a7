"""Training: the config tree, the jitted train step, the loop, checkpoints and presets."""
