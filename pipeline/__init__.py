"""MedProbCLIP pipeline: MIMIC-CXR-JPG (or its synthetic twin) to trained, evaluated retrieval models."""

__version__ = "0.1.0"
