"""Orchestration, the top layer: training rounds, evaluation, the CLI, the run directory and its
reports. It may import every other layer; nothing below imports it."""
