"""NextLevelBERT document embeddings as a sentence-transformers module, written by ``bertkit export hf``.

    from sentence_transformers import SentenceTransformer
    model = SentenceTransformer("exports/nextlevel", trust_remote_code=True)
    vectors = model.encode(["A whole document ...", "Another one ..."])

NextLevelBERT (Czinczoll et al., "NextLevelBERT: Masked Language Modeling with Higher-Level Representations for
Long Documents", ACL 2024): a document is cut into chunks, every chunk is embedded by a frozen sentence encoder (the
sentence-transformers model in ``chunk_encoder/``, with its own modules.json and pooling), and a BERT encoder over
``[CLS] chunk vectors [SEP]`` (learned special vectors, positions, LayerNorm) gives contextual chunk states; the
document vector is their mean over the chunk positions. Chunks are cut as bertkit cut them in training: the
document's tokens (the chunk encoder's tokenizer, ``chunk_tokenizer.json``) in pieces of ``chunk_size - 2``, each
``[CLS] piece [SEP]``; ``chunk_size = 0`` (one chunk per sentence) needs bertkit's sentence splitter
(``pip install bertkit``). This file needs torch, tokenizers and sentence-transformers.
"""

from __future__ import annotations

import json
import os
import shutil

import torch
import torch.nn.functional as F
from torch import nn

CONFIG = "nextlevel_config.json"
WEIGHTS = "nextlevel.safetensors"
TOKENIZER = "chunk_tokenizer.json"
ENCODER = "chunk_encoder"
SPECIAL = {"pad": 0, "cls": 1, "sep": 2, "mask": 3}
MAX_SENTENCE_TOKENS = 510


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


ACTIVATIONS = {"gelu": F.gelu, "gelu_new": _gelu_tanh, "gelu_pytorch_tanh": _gelu_tanh, "relu": F.relu}


class _Linear(nn.Module):
    """``dense`` (+ LayerNorm of the residual sum when ``norm``): BERT's self-output / output blocks."""

    def __init__(self, d_in: int, d_out: int, eps: float | None) -> None:
        super().__init__()
        self.dense = nn.Linear(d_in, d_out)
        if eps is not None:
            self.LayerNorm = nn.LayerNorm(d_out, eps=eps)


class _SelfAttention(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(d, d)
        self.key = nn.Linear(d, d)
        self.value = nn.Linear(d, d)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        B, T, D = x.shape
        shape = (B, T, self.heads, D // self.heads)
        q = self.query(x).view(shape).transpose(1, 2)
        k = self.key(x).view(shape).transpose(1, 2)
        v = self.value(x).view(shape).transpose(1, 2)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2).reshape(B, T, D)


class _Attention(nn.Module):
    def __init__(self, d: int, heads: int, eps: float) -> None:
        super().__init__()
        self.self = _SelfAttention(d, heads)
        self.output = _Linear(d, d, eps)


class _Layer(nn.Module):
    """A post-LN BERT layer (Hugging Face's parameter names)."""

    def __init__(self, config: dict) -> None:
        super().__init__()
        d, eps = config["hidden_size"], config["layer_norm_eps"]
        self.attention = _Attention(d, config["num_attention_heads"], eps)
        self.intermediate = _Linear(d, config["intermediate_size"], None)
        self.output = _Linear(config["intermediate_size"], d, eps)
        self.act = ACTIVATIONS[config["hidden_act"]]

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        a = self.attention.output
        x = a.LayerNorm(a.dense(self.attention.self(x, mask)) + x)
        return self.output.LayerNorm(self.output.dense(self.act(self.intermediate.dense(x))) + x)


class _Encoder(nn.Module):
    def __init__(self, config: dict) -> None:
        super().__init__()
        self.layer = nn.ModuleList(_Layer(config) for _ in range(config["num_hidden_layers"]))


class _Embeddings(nn.Module):
    def __init__(self, config: dict) -> None:
        super().__init__()
        d = config["hidden_size"]
        E = config["embedding_dim"] or d
        self.special_embeddings = nn.Embedding(len(SPECIAL), E, padding_idx=SPECIAL["pad"])
        self.input_projection = nn.Linear(E, d) if E != d else None
        self.position_embeddings = nn.Embedding(config["max_position_embeddings"], d)
        self.token_type_embeddings = nn.Embedding(config["type_vocab_size"], d)
        self.LayerNorm = nn.LayerNorm(d, eps=config["layer_norm_eps"])

    def forward(self, chunks: torch.Tensor, special_ids: torch.Tensor) -> torch.Tensor:
        T = special_ids.shape[1]
        special = self.special_embeddings(special_ids.clamp_min(0))
        x = torch.where((special_ids >= 0).unsqueeze(-1), special, chunks.to(special.dtype))
        if self.input_projection is not None:
            x = self.input_projection(x)
        x = x + self.position_embeddings(torch.arange(T, device=x.device)) + self.token_type_embeddings.weight[0]
        return self.LayerNorm(x)


class NextLevelModel(nn.Module):
    """The NextLevel transformer over chunk vectors (bertkit's parameter names, without the prediction head)."""

    def __init__(self, config: dict) -> None:
        super().__init__()
        self.embeddings = _Embeddings(config)
        self.encoder = _Encoder(config)

    def forward(self, chunks: torch.Tensor, special_ids: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        mask = None if keep is None else keep[:, None, None, :]
        x = self.embeddings(chunks, special_ids)
        for layer in self.encoder.layer:
            x = layer(x, mask)
        return x


class NextLevelDocuments(nn.Module):
    """The sentence-transformers module: texts → chunks → chunk vectors → NextLevel → document vectors."""

    def __init__(self, path: str, config: dict) -> None:
        super().__init__()
        from safetensors.torch import load_file
        from sentence_transformers import SentenceTransformer
        from tokenizers import Tokenizer

        self.path = path
        self.config = config
        self.chunk_size = int(config["chunk_size"])
        self.max_chunks = int(config["max_position_embeddings"]) - 2  # [CLS] chunks [SEP]
        self.tokenizer = Tokenizer.from_file(os.path.join(path, TOKENIZER))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.cls_id = self.tokenizer.token_to_id("[CLS]")
        self.sep_id = self.tokenizer.token_to_id("[SEP]")
        self.pad_id = self.tokenizer.token_to_id("[PAD]")
        self.chunk_encoder = SentenceTransformer(os.path.join(path, ENCODER), device="cpu")
        self.chunk_limit = int(config["chunk_max_seq_length"])
        self.model = NextLevelModel(config)
        self.model.load_state_dict(load_file(os.path.join(path, WEIGHTS)))
        self.eval()

    # ------------------------------------------------------------------------------------------ chunking

    def _sentences(self, text: str) -> list[str]:
        try:
            from bertkit._core import split_sentences
        except ImportError:
            raise ImportError(
                "this NextLevel model was trained on sentence chunks (chunk_size 0): cutting texts into sentences "
                "as in training needs bertkit's sentence splitter (pip install bertkit)"
            ) from None
        return split_sentences(text, self.config.get("splitter", "rules"))

    def _chunks(self, text: str) -> list[list[int]]:
        if self.chunk_size == 0:
            sentences = [s for s in self._sentences(text)]
            encoded = self.tokenizer.encode_batch(sentences, add_special_tokens=False) if sentences else []
            pieces = [e.ids[:MAX_SENTENCE_TOKENS] for e in encoded if e.ids]
        else:
            tokens = self.tokenizer.encode(text, add_special_tokens=False).ids
            step = self.chunk_size - 2
            pieces = [tokens[i : i + step] for i in range(0, len(tokens), step)]
        out = []
        for piece in pieces[: self.max_chunks]:
            ids = [self.cls_id, *piece, self.sep_id]
            if len(ids) > self.chunk_limit:  # the chunk encoder's max_seq_length: keep the head and [SEP]
                ids = ids[: self.chunk_limit - 1] + ids[-1:]
            out.append(ids)
        return out

    def tokenize(self, texts: list[str], **kwargs) -> dict[str, torch.Tensor]:
        per_doc = []
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"document {i} is a {type(text).__name__}, not a string")
            chunks = self._chunks(text)
            if not chunks:
                raise ValueError(f"document {i} has no tokens: a NextLevel document vector needs at least one chunk")
            per_doc.append(chunks)
        flat = [c for doc in per_doc for c in doc]
        width = max(len(c) for c in flat)
        ids = torch.full((len(flat), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(flat), width), dtype=torch.long)
        for row, c in enumerate(flat):
            ids[row, : len(c)] = torch.tensor(c, dtype=torch.long)
            mask[row, : len(c)] = 1
        return {
            "chunk_input_ids": ids,
            "chunk_attention_mask": mask,
            "chunks_per_document": torch.tensor([len(d) for d in per_doc], dtype=torch.long),
        }

    # --------------------------------------------------------------------------------------------- forward

    def _chunk_vectors(self, ids: torch.Tensor, mask: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        out = []
        for lo in range(0, ids.shape[0], batch_size):
            m = mask[lo : lo + batch_size]
            width = int(m.sum(dim=1).max())
            features = {
                "input_ids": ids[lo : lo + batch_size, :width],
                "attention_mask": m[:, :width],
                "token_type_ids": torch.zeros_like(m[:, :width]),
            }
            out.append(self.chunk_encoder(features)["sentence_embedding"].float())
        return torch.cat(out)

    def forward(self, features: dict[str, torch.Tensor], **kwargs) -> dict[str, torch.Tensor]:
        vectors = self._chunk_vectors(features["chunk_input_ids"], features["chunk_attention_mask"])
        counts = features["chunks_per_document"].tolist()
        B, T, E = len(counts), max(counts) + 2, vectors.shape[-1]
        chunks = vectors.new_zeros(B, T, E)
        special = torch.full((B, T), SPECIAL["pad"], dtype=torch.long, device=vectors.device)
        special[:, 0] = SPECIAL["cls"]
        start = 0
        for row, n in enumerate(counts):
            chunks[row, 1 : n + 1] = vectors[start : start + n]
            special[row, 1 : n + 1] = -1
            special[row, n + 1] = SPECIAL["sep"]
            start += n
        keep = special != SPECIAL["pad"] if min(counts) != max(counts) else None
        hidden = self.model(chunks, special, keep).float()
        chunk_rows = (special == -1).unsqueeze(-1).to(hidden.dtype)
        features["sentence_embedding"] = (hidden * chunk_rows).sum(dim=1) / chunk_rows.sum(dim=1).clamp_min(1.0)
        return features

    def get_embedding_dimension(self) -> int:
        return int(self.config["hidden_size"])

    get_sentence_embedding_dimension = get_embedding_dimension  # the name before sentence-transformers 6

    # ------------------------------------------------------------------------------------ save / load

    def save(self, output_path: str, *args, **kwargs) -> None:
        from safetensors.torch import save_file

        os.makedirs(output_path, exist_ok=True)
        with open(os.path.join(output_path, CONFIG), "w", encoding="utf-8") as f:
            json.dump(self.config, f, indent=2)
        save_file({k: v.contiguous() for k, v in self.model.state_dict().items()}, os.path.join(output_path, WEIGHTS))
        if os.path.abspath(output_path) != os.path.abspath(self.path):
            shutil.copyfile(os.path.join(self.path, TOKENIZER), os.path.join(output_path, TOKENIZER))
            shutil.copyfile(__file__, os.path.join(output_path, os.path.basename(__file__)))
        self.chunk_encoder.save(os.path.join(output_path, ENCODER))

    @classmethod
    def load(cls, input_path: str) -> NextLevelDocuments:
        with open(os.path.join(input_path, CONFIG), encoding="utf-8") as f:
            config = json.load(f)
        return cls(input_path, config)
