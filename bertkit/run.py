"""Load any training run as a model for notebooks and scripts: ``bertkit.load_run(RUN)``.

    import bertkit, torch
    run = bertkit.load_run("runs/tiny")        # the newest complete checkpoint, eval mode, CPU
    logits = run.mlm_logits(torch.tensor([[2, 2054, 4, 3]]))   # [B, T, V]

The checkpoint is read through ``bertkit.train.checkpoint`` (its load functions check what they read), so a run
directory without a complete checkpoint, or a broken one, is an error naming the path. Every token architecture
answers ``mlm_logits(input_ids, attention_mask=None, token_type_ids=None)`` with full-vocabulary logits for every
position; NarrowBERT runs query every position (each row is computed as if it were the one masked query, which is
what the narrow layers compute for a query). NextLevel runs predict chunk vectors, not tokens: use
``bertkit.NextLevelBERT.from_pretrained(run)`` for their document embeddings.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bertkit.exceptions import ConfigError

__all__ = ["RunModel", "load_run"]


class RunModel(nn.Module):
    """A trained run's pretraining model (``.model``) with what it was trained with; calling it gives
    :meth:`mlm_logits`."""

    def __init__(self, loaded: Any) -> None:
        super().__init__()
        self.model = loaded.model
        self.arch: str = loaded.arch
        """The ``--arch`` name (``bert``, ``narrowbert``, ``elc-bert``, ``ltg-bert``, ``nextlevel``)."""
        self.model_config = loaded.model_config
        self.train_config = loaded.config
        """The checkpoint's resolved :class:`~bertkit.train.config.TrainConfig`."""
        self.run_dir: Path = loaded.run_dir
        self.checkpoint: Path = loaded.checkpoint
        self.step: int = loaded.step

    @property
    def config(self) -> Any:
        """The model config (a frozen dataclass of the architecture)."""
        return self.model_config

    @property
    def tokenizer_dir(self) -> Path | None:
        """The tokenizer files the run was trained with (its dataset's ``tokenizer/``, else its ``init_from``
        directory); None when neither exists any more."""
        from bertkit.eval.text import run_tokenizer_dir

        return run_tokenizer_dir(self.train_config)

    def _check_tokens(self) -> None:
        if not hasattr(self.model, "mlm_logits"):
            raise ConfigError(
                f"{self.run_dir}: a {self.arch} run predicts chunk vectors, not tokens; use "
                "bertkit.NextLevelBERT.from_pretrained(run).encode(documents) for its document embeddings"
            )

    def mlm_logits(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Full-vocabulary masked-LM logits ``[B, T, V]`` at every position (``input_ids [B, T]`` int64;
        ``attention_mask [B, T]`` 1 = token, 0 = padding, None = no padding)."""
        self._check_tokens()
        input_ids = torch.as_tensor(input_ids)
        if input_ids.dim() == 1:
            input_ids = input_ids[None]
        if input_ids.dim() != 2:
            raise ConfigError(f"input_ids must be [B, T], got shape {tuple(input_ids.shape)}")
        B, T = input_ids.shape
        return self.model.mlm_logits(input_ids, attention_mask, token_type_ids).view(B, T, -1)

    def encode(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Last hidden states ``[B, T, d]`` (NarrowBERT: every position queried)."""
        self._check_tokens()
        return self.model.encode(torch.as_tensor(input_ids), attention_mask, token_type_ids)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.mlm_logits(input_ids, attention_mask, token_type_ids)

    def extra_repr(self) -> str:
        return f"arch={self.arch!r}, checkpoint={str(self.checkpoint)!r}, step={self.step}"


def load_run(
    run: str | os.PathLike[str],
    checkpoint: str | os.PathLike[str] | None = None,
    *,
    device: str = "cpu",
) -> RunModel:
    """The model of ``checkpoint`` (default: the run's newest complete one) in eval mode on ``device``.

    A missing run directory or one without a complete checkpoint is a ConfigError naming it; unreadable checkpoint
    files are FormatErrors naming the file."""
    from bertkit.eval.mlm import load_run as _load

    model = RunModel(_load(run, checkpoint, device=device))
    return model.eval()
