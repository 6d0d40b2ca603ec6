"""Pieces of the trainer: params, optimiser and schedule, checkpoints, validation retrieval, DDP helpers."""
