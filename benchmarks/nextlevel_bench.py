"""NextLevelBERT: `bertkit encode` throughput against SentenceTransformer.encode, and the retrieval quality of a small
next-level model trained on the real corpora against the mean-pooled encoder baseline.

    python benchmarks/nextlevel_bench.py [--work DIR] [--encode-chunks 768] [--repeat 3]
    python benchmarks/nextlevel_bench.py --skip-retrieval          # throughput only
    python benchmarks/nextlevel_bench.py --skip-retrieval --compile   # throughput of `bertkit encode --compile`
    python benchmarks/nextlevel_bench.py --skip-encode --train-steps 600 --eval-docs 2225   # a bigger quality run
    python benchmarks/nextlevel_bench.py --skip-encode --train-corpus bbc --train-steps 1500 --batch-size 8 \
        --seq-len 64 --lr 3e-4 --curve-every 250                                           # in-domain, with a curve
    python benchmarks/nextlevel_bench.py --skip-encode --train-corpus bbc ... --preset small --eps 1e-6  # variants

Needs $BERTKIT_DATA (scripts/fetch_data.py: news, BBC, KJV, Wikipedia, minilm/) and sentence-transformers. The
defaults take about 30 minutes on 2 CPU cores; on CUDA the encode part uses 20,000 chunks and bf16.

1. Encode throughput. The first news articles, prepared with MiniLM's tokenizer into 256-token chunks (`bertkit
   prepare --instances chunks`). bertkit: `encode_dataset` (the `bertkit encode` library call: length-sorted
   batches of token ids, SDPA BertModel, fp32 on CPU / bf16 on CUDA, float16 store with checksums and manifest).
   Anchor: `SentenceTransformer(minilm).encode(texts)` with default settings on the same chunks (their text,
   decoded), same device. Both models are loaded before timing; rounds alternate; medians. Targets: >= 1.5x chunks/s
   on CPU, >= 3x on GPU. The agreement (mean cosine between the two embeddings of every chunk) is printed too.
2. Retrieval. Training corpus: news (documents after the first `--eval-docs`... none of BBC) + Wikipedia + KJV
   (chapters of 25 verses), `--chunk-size` tokens per chunk, encoded once; `--arch nextlevel --preset minilm` (the
   paper: MiniLM-L6's transformer, SmoothL1, AdamW, cosine schedule, 5 % warmup, no weight decay) trained
   `--train-steps` steps of `--batch-size` x `--seq-len`. Evaluation on held-out BBC articles (never trained on):
   title → article, all `--eval-docs` articles as targets. Side by side on the same chunk embeddings: the trained
   model, the same model before training (its init), and the encoder alone (mean of the chunk embeddings: the
   baseline the method must beat). MRR, MAP, Hit@1, Hit@10 over the full ranking. `--train-corpus bbc` trains
   in-domain instead: the BBC articles after the evaluated ones plus `--train-news` news articles;
   `--curve-every N` checkpoints every N steps and reports the MRR at each (the learning curve).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import DATA, header, median, row  # noqa: E402

# ---------------------------------------------------------------------------------------------- corpora


def _jsonl(path: Path, texts: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for t in texts:
            f.write(json.dumps({"text": t}) + "\n")
    return path


def _news() -> list[str]:
    return [json.loads(line)["text"] for line in open(DATA / "news.jsonl", encoding="utf-8")]


def _bbc_training_texts(eval_docs: int) -> list[str]:
    """The BBC articles after the first ``eval_docs`` (which are the retrieval targets, never trained on)."""
    rows = [json.loads(line) for line in open(DATA / "bbc.jsonl", encoding="utf-8")]
    return [r["text"] for r in rows[eval_docs:]]


def _training_texts(target_tokens: int) -> list[str]:
    """News, Wikipedia and KJV chapters (25 verses), interleaved, until about ``target_tokens`` (4 chars a token)."""
    wiki = [b.strip() for b in (DATA / "wiki.txt").read_text(encoding="utf-8").split("\n\n") if b.strip()]
    verses = [v for v in (DATA / "kjv.txt").read_text(encoding="utf-8").splitlines() if v.strip()]
    kjv = [" ".join(verses[i : i + 25]) for i in range(0, len(verses), 25)]
    sources = [_news(), wiki, kjv]
    out, chars, i = [], 0, 0
    while chars < target_tokens * 4 and any(i < len(s) for s in sources):
        for s in sources:
            if i < len(s):
                out.append(s[i])
                chars += len(s[i])
        i += 1
    return out


def _prepare(jsonl: Path, out: Path, chunk_size: int) -> Path:
    from bertkit.data.prepare import PrepareConfig, prepare

    if not (out / "manifest.json").is_file():
        prepare(
            PrepareConfig(
                inputs=[str(jsonl)],
                out=out,
                tokenizer=DATA / "minilm" / "tokenizer.json",
                instances=["chunks"],
                chunk_size=chunk_size,
                overwrite=True,
            )
        )
    return out


# ------------------------------------------------------------------------------------------- 1. throughput


def bench_encode(work: Path, n_chunks: int, repeat: int, device: str, compile: bool = False) -> dict:
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

    from bertkit.data import open_dataset
    from bertkit.encode import load_encoder, open_store
    from bertkit.encode.store import encode_dataset

    docs = _news()[: max(1, math.ceil(n_chunks / 3.2))]  # news: 3.2 chunks of 256 tokens per article
    dataset = _prepare(_jsonl(work / f"encode-{len(docs)}.jsonl", docs), work / f"encode-{len(docs)}", 256)
    chunks = open_dataset(dataset).instances("chunks")
    n = chunks.num_chunks
    tok = Tokenizer.from_file(str(DATA / "minilm" / "tokenizer.json"))
    texts = [tok.decode(np.asarray(chunks.chunk(j)).tolist(), skip_special_tokens=True) for j in range(n)]
    encoder = load_encoder("all-MiniLM-L6-v2", device=device, compile=compile)
    st = SentenceTransformer(str(DATA / "minilm"), device=str(encoder.device))
    if any(p.dtype != torch.float32 for p in st.parameters()):  # float16 weights file (scripts/gpu_data.py) loaded
        st = st.float()  # as stored by a transformers that keeps the file's dtype: the default model is float32
    warmup_s = None
    if compile:  # the compile is paid once per job: timed on its own, outside the rounds
        t = time.perf_counter()
        encode_dataset(dataset, encoder, work / "encode-store", overwrite=True)
        warmup_s = time.perf_counter() - t
    ours_s, theirs_s = [], []
    theirs = None
    for _ in range(repeat):
        t = time.perf_counter()
        encode_dataset(dataset, encoder, work / "encode-store", overwrite=True)
        ours_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        theirs = st.encode(texts)
        theirs_s.append(time.perf_counter() - t)
    store = open_store(work / "encode-store")
    ours = store.slice(0, store.num_chunks).astype(np.float32)
    cos = float(np.mean(np.sum(ours * theirs, axis=1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)))
    return {
        "chunks": n,
        "device": str(encoder.device),
        "ours_chunks_per_s": n / median(ours_s),
        "anchor_chunks_per_s": n / median(theirs_s),
        "ours_s": ours_s,
        "anchor_s": theirs_s,
        "compile": compile,
        "first_pass_with_compile_s": warmup_s,
        "mean_cosine": cos,
    }


# -------------------------------------------------------------------------------------------- 2. retrieval


def bench_retrieval(work: Path, args: argparse.Namespace) -> dict:
    import numpy as np
    import torch

    from bertkit.encode import NextLevelBERT, load_encoder
    from bertkit.encode.chunking import Chunker
    from bertkit.encode.store import encode_dataset
    from bertkit.eval.retrieval import paired_bootstrap, query_metrics, retrieval_metrics
    from bertkit.models.nextlevel import NextLevelForPreTraining
    from bertkit.train.config import TrainConfig
    from bertkit.train.trainer import train

    cs = args.chunk_size
    if args.train_corpus == "bbc":
        texts = _bbc_training_texts(args.eval_docs) + _news()[: args.train_news]
    else:
        texts = _training_texts(args.train_tokens)
    name = f"train-{args.train_corpus}-{len(texts)}"
    dataset = _prepare(_jsonl(work / f"{name}.jsonl", texts), work / f"{name}-{cs}", cs)
    encoder = load_encoder("all-MiniLM-L6-v2", device=args.device)
    store = work / f"{name}-{cs}-emb"
    t = time.perf_counter()
    enc_summary = encode_dataset(dataset, encoder, store)
    encode_s = time.perf_counter() - t
    run = work / f"run-{name}-{cs}-{args.train_steps}x{args.batch_size}x{args.seq_len}-lr{args.lr:g}"
    if args.preset != "minilm":
        run = run.with_name(f"{run.name}-{args.preset}")
    if args.eps is not None:
        run = run.with_name(f"{run.name}-eps{args.eps:g}")
    if args.fresh_init != "bert":
        run = run.with_name(f"{run.name}-{args.fresh_init}-init")
    if args.loss != "smoothl1":
        run = run.with_name(f"{run.name}-{args.loss}")
    config = TrainConfig(
        data=str(store),
        out=str(run),
        arch="nextlevel",
        preset=args.preset,
        model={"fresh_init": args.fresh_init, "loss": args.loss},
        seq_len=args.seq_len,
        batch_size=args.batch_size,
        max_steps=args.train_steps,
        lr=args.lr,
        eps=args.eps,
        weight_decay=0.0,
        schedule="cosine",
        warmup=0.05,
        eval_every=0,
        checkpoint_every=args.curve_every,
        keep_last=10_000,
        eval_fraction=0.02,
        tensorboard=False,
        plot=False,
        device=args.device,
        log_every=10,
    )
    t = time.perf_counter()
    from bertkit.train import checkpoint as ckpt_lib

    if ckpt_lib.latest(run) is None:
        summary = train(config, on_event=lambda e: print(f"  step {e['step']}: loss {e['loss']:.6f}", flush=True)
                        if e["event"] == "log" else None)  # fmt: skip
        final_loss = summary.final_loss
    else:
        final_loss = None
    train_s = time.perf_counter() - t

    bbc = [json.loads(line) for line in open(DATA / "bbc.jsonl", encoding="utf-8")][: args.eval_docs]
    model = NextLevelBERT.from_pretrained(run, device=args.device)
    chunker = Chunker(encoder.tokenizer, cs)
    queries = chunker.chunk([r["title"] for r in bbc])
    targets = chunker.chunk([r["text"] for r in bbc])
    flat = [c for doc in queries + targets for c in doc]
    t = time.perf_counter()
    vectors = encoder.encode_ids(flat)
    eval_encode_s = time.perf_counter() - t
    bounds = np.cumsum([0] + [len(d) for d in queries + targets])
    per_doc = [vectors[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    relevant = [[i] for i in range(len(bbc))]

    def scores(doc_vectors: np.ndarray) -> np.ndarray:
        v = doc_vectors / np.linalg.norm(doc_vectors, axis=1, keepdims=True)
        return v[: len(bbc)] @ v[len(bbc) :].T

    def metrics(doc_vectors: np.ndarray) -> dict:
        return retrieval_metrics(scores(doc_vectors), relevant, k=10)

    torch.manual_seed(config.seed)  # the fresh parts (positions, special vectors, head; all of `small`) seeded
    if model.config.init_from_encoder:
        init = NextLevelForPreTraining.from_encoder(str(encoder.root), model.config)
    else:
        init = NextLevelForPreTraining(model.config)
    init_model = NextLevelBERT(init.to(encoder.device), encoder)
    curve = {}
    if args.curve_every:
        for ckpt in ckpt_lib.list_checkpoints(run):
            step = int(ckpt_lib.read_meta(ckpt).get("step", 0))
            curve[step] = metrics(NextLevelBERT.from_pretrained(ckpt, device=args.device).embed_chunks(per_doc))
    trained = model.embed_chunks(per_doc)
    baseline = np.stack([p.mean(axis=0) for p in per_doc])
    results = {
        "NextLevel trained": metrics(trained),
        "NextLevel at init (no training)": metrics(init_model.embed_chunks(per_doc)),
        "MiniLM mean of chunks (baseline)": metrics(baseline),
    }
    vs_baseline = paired_bootstrap(*(query_metrics(scores(v), relevant)["mrr"] for v in (trained, baseline)))
    return {
        "train_documents": len(texts),
        "train_chunks": enc_summary["chunks"],
        "chunk_size": cs,
        "train_steps": args.train_steps,
        "preset": args.preset,
        "fresh_init": args.fresh_init,
        "loss": args.loss,
        "eps": config.resolved_eps(),
        "batch": f"{args.batch_size} x {args.seq_len}",
        "final_loss": final_loss,
        "encode_train_s": encode_s,
        "train_s": train_s,
        "eval_docs": len(bbc),
        "eval_encode_s": eval_encode_s,
        "results": results,
        "vs_baseline": vs_baseline,
        "curve": curve,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=DATA / "bench" / "nextlevel", help="cache of datasets, stores, runs")
    p.add_argument("--device", default="auto")
    p.add_argument("--encode-chunks", type=int, default=None, help="chunks timed (default 768 CPU, 20000 CUDA)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--compile", action="store_true", help="encode with torch.compile (first pass timed apart)")
    p.add_argument("--train-tokens", type=int, default=1_000_000, help="training text, about this many tokens")
    p.add_argument(
        "--train-corpus",
        choices=("mixed", "bbc"),
        default="mixed",
        help="mixed: news + Wikipedia + KJV (--train-tokens); bbc: the BBC articles not evaluated (in-domain) + the "
        "first --train-news news articles",
    )
    p.add_argument("--train-news", type=int, default=1000, help="news articles added to --train-corpus bbc")
    p.add_argument("--curve-every", type=int, default=0, help="checkpoint every N steps and report MRR at each")
    p.add_argument("--chunk-size", type=int, default=128)
    p.add_argument("--train-steps", type=int, default=150)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--eps", type=float, default=None, help="Adam eps (default: automatic, 1e-8 for NextLevel)")
    p.add_argument("--loss", choices=("smoothl1", "l1", "mse", "cosine"), default="smoothl1")
    p.add_argument(
        "--fresh-init",
        choices=("bert", "original"),
        default="bert",
        help="init of positions, special vectors and head: normal(0, 0.02) or PyTorch's defaults as the original",
    )
    p.add_argument(
        "--preset",
        choices=("minilm", "small"),
        default="minilm",
        help="minilm: the paper's start from the encoder's transformer; small: the same shape, randomly initialised",
    )
    p.add_argument("--eval-docs", type=int, default=400, help="held-out BBC articles (targets) and their titles")
    p.add_argument("--skip-encode", action="store_true")
    p.add_argument("--skip-retrieval", action="store_true")
    args = p.parse_args()
    import torch

    cuda = torch.cuda.is_available() and args.device in ("auto", "cuda")
    n_chunks = args.encode_chunks or (20000 if cuda else 768)
    args.work.mkdir(parents=True, exist_ok=True)
    report = {}
    header("NextLevelBERT")
    if not args.skip_encode:
        r = bench_encode(args.work, n_chunks, args.repeat, args.device, compile=args.compile)
        report["encode"] = r
        target = ">= 3x" if r["device"].startswith("cuda") else ">= 1.5x"
        compiled = (
            f"; --compile, first pass with the compile {r['first_pass_with_compile_s']:.0f} s" if args.compile else ""
        )
        row(
            f"encode {r['chunks']:,} news chunks of 256 tokens, {r['device']} (chunks/s, median of {args.repeat}; "
            f"mean cosine {r['mean_cosine']:.6f}{compiled})",
            f"{r['anchor_chunks_per_s']:,.1f}",
            f"{r['ours_chunks_per_s']:,.1f}",
            r["ours_chunks_per_s"] / r["anchor_chunks_per_s"],
            target,
        )
    if not args.skip_retrieval:
        r = bench_retrieval(args.work, args)
        report["retrieval"] = r
        base = r["results"]["MiniLM mean of chunks (baseline)"]
        chunks = f"{r['chunk_size']} tokens" if r["chunk_size"] else "a sentence"
        print(
            f"\nretrieval: BBC title → article, {r['eval_docs']} held-out articles; NextLevel trained on "
            f"{r['train_documents']:,} documents ({r['train_chunks']:,} chunks of {chunks}), "
            f"{r['train_steps']} steps of {r['batch']}, preset {r['preset']} "
            f"({r['fresh_init']} init of the new parts), {r['loss']} loss, "
            f"Adam eps {r['eps']:g} "
            f"(encode {r['encode_train_s']:.0f} s, train {r['train_s']:.0f} s)"
            "\n\n| model | MRR | MAP | Hit@1 | Hit@10 | MRR vs baseline |\n|---|---|---|---|---|---|"
        )
        for label, m in r["results"].items():
            print(
                f"| {label} | {m['mrr']:.4f} | {m['map']:.4f} | {m['hit@1']:.4f} | {m['hit@10']:.4f} | "
                f"{m['mrr'] / base['mrr']:.2f}x |"
            )
        v = r["vs_baseline"]
        print(
            f"\nNextLevel trained − baseline, MRR: {v['delta']:+.4f}, {v['confidence']:.0%} CI "
            f"[{v['ci'][0]:+.4f}, {v['ci'][1]:+.4f}] (paired bootstrap over {v['queries']} queries): {v['verdict']}"
        )
        if r["curve"]:
            print("\nMRR by training step: " + ", ".join(f"{s}: {m['mrr']:.4f}" for s, m in r["curve"].items()))
    (args.work / "nextlevel_bench.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
