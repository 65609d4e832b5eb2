"""Shared Linen layers."""
