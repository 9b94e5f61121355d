"""Density-ratio scorers."""
