"""Evaluation of trained runs: masked-LM figures and predictions (``bertkit eval mlm``), zero-shot minimal pairs by
pseudo-log-likelihood (``bertkit eval blimp``), and fine-tuning evaluations (``bertkit eval glue | classify | ner``)
for every registered architecture and Hugging Face directories.

Importing this package does not import torch; the functions load it when called.
"""

from __future__ import annotations

from bertkit.eval.blimp import evaluate_blimp, load_scorer, score_sentences
from bertkit.eval.classify import evaluate_classify
from bertkit.eval.finetune import Backbone, FinetuneConfig, load_backbone
from bertkit.eval.glue import evaluate_glue
from bertkit.eval.mlm import LoadedRun, evaluate_mlm, format_predictions, load_run
from bertkit.eval.ner import evaluate_ner

__all__ = [
    "Backbone",
    "FinetuneConfig",
    "LoadedRun",
    "evaluate_blimp",
    "evaluate_classify",
    "evaluate_glue",
    "evaluate_mlm",
    "evaluate_ner",
    "format_predictions",
    "load_backbone",
    "load_run",
    "load_scorer",
    "score_sentences",
]
