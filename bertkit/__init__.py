"""bertkit: pretrain, compare and evaluate BERT-family encoders.

The Rust extension (`bertkit._core`) prepares corpora into memory-mapped shards; `bertkit.data`
reads them. The library never imports typer or rich (the CLI in `cli/` does).
"""

__version__ = "0.1.0"
