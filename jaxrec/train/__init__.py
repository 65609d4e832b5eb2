"""Fitting and training: closed-form models now, the neural loop next."""
