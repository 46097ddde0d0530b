"""Measurement: timing, statistics, memory and energy, one module per concern."""
