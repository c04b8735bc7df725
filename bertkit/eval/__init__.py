"""Evaluation of trained runs: masked-LM figures and predictions (``bertkit eval mlm``).

Importing this package does not import torch; the functions load it when called.
"""

from __future__ import annotations

from bertkit.eval.mlm import LoadedRun, evaluate_mlm, format_predictions, load_run

__all__ = ["LoadedRun", "evaluate_mlm", "format_predictions", "load_run"]
