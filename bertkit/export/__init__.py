"""Export trained models to other ecosystems (and import from them).

``export_run(run, out)`` writes any run as a directory ``transformers`` (or, for NextLevel, sentence-transformers)
loads; ``bertkit.export.hf`` is plain BERT, ``bertkit.export.remote`` the architectures with a modeling file of
their own, ``bertkit.export.tokenizer`` the tokenizer files, ``bertkit.export.output`` the safe publishing.
"""

from bertkit.export.hf import LoadReport, export_hf, init_from_hf, load_hf_bert
from bertkit.export.output import ExportExistsError
from bertkit.export.run import ExportResult, export_run

__all__ = ["ExportExistsError", "ExportResult", "LoadReport", "export_hf", "export_run", "init_from_hf", "load_hf_bert"]
