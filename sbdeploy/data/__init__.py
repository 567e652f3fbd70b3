"""Data sources for training, calibration and validation."""
