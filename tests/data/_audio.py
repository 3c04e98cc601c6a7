"""Test audio shared by the feature and extraction tests."""

import numpy as np

SR = 16000


def speechlike(seconds: float, seed: int = 0, amp: float = 0.3) -> np.ndarray:
    """Tone plus noise: broadband, so every mel band carries energy."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * SR)) / SR
    wave = 0.5 * np.sin(2 * np.pi * 220 * t) + 0.5 * rng.standard_normal(t.size)
    return (amp * wave / np.abs(wave).max()).astype(np.float32)
