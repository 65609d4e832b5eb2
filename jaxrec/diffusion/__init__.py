"""Diffusion math in pure JAX: schedules, forward process, samplers."""
