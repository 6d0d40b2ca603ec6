"""Evaluation of a trained method: every metric of the papers on the test split (see `runner`)."""

from __future__ import annotations

from pipeline.evaluation.params import EvaluateParams
from pipeline.evaluation.runner import Evaluation, evaluate
from pipeline.evaluation.trained import TrainedMethod, load_trained

__all__ = ["EvaluateParams", "Evaluation", "TrainedMethod", "evaluate", "load_trained"]
