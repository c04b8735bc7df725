"""Export trained models to other ecosystems (and import from them): ``bertkit.export.hf`` for Hugging Face."""

from bertkit.export.hf import LoadReport, export_hf, init_from_hf, load_hf_bert

__all__ = ["LoadReport", "export_hf", "init_from_hf", "load_hf_bert"]
