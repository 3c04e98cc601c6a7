"""Foundations every layer may import: configs, atomic files, run directories, worker processes.

Nothing here imports JAX, so the NumPy-only data layer can use it.
"""
