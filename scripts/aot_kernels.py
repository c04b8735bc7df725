#!/usr/bin/env python3
"""Compile every Triton kernel of bertkit.ops ahead of time for real GPU targets, on a machine without a GPU.

    python scripts/aot_kernels.py --targets sm_80,sm_90 [--dtypes bf16,fp16,fp32,tf32] [--shapes base,tiny]
                                  [--json OUT] [--jobs N]

The launchers themselves choose what is compiled: inside `bertkit.ops.triton.recording(sms)` they take CPU tensors
of the model's shapes, plan each launch for a CUDA device with that many SMs (block sizes, num_warps, num_stages,
vocabulary splits, exactly as on such a device) and record it instead of running it. Each recorded launch is then
specialised as Triton's launcher would (argument types, 16-byte divisibility, integers equal to 1) and compiled with
``triton.compile(ASTSource(kernel, signature, constexprs, attrs), target=GPUTarget("cuda", cc, 32))``: Triton to
PTX, ptxas (shipped with triton) to cubin. Identical specialisations are compiled once.

Kernels and calls (per target, dtype and shape set):

- masked_lm_loss: the forward kernel and both backward kernels (dW/db and dH), with and without the decoder bias,
  for M = round(0.15·B·T) masked rows (fixed count) and M = the binomial-count capacity;
- layer_mix: the forward kernel and the backward kernels (with and without the layer outputs' and the logits'
  gradients, every `accumulate_below` 0..n) for every mix of an ELC-BERT forward pass (n = 1 … layers + 1 outputs,
  rows of one [layers + 1, tokens·d] buffer), and the logits-gradient kernel.

Shape sets: ``base`` (d 768, V 30,522, 256 × 128 tokens, 12 layers) and ``tiny`` (the tests' tiny models: d 128,
V 64, 8 × 32 tokens for the loss, 4 layers over 8 × 64 tokens for the mix). Dtypes: bf16, fp16, fp32 (IEEE dots,
torch's default "highest" matmul precision) and tf32 (fp32 inputs with torch.set_float32_matmul_precision("high");
only masked_lm_loss has dots, so layer_mix compiles it as fp32).

For each compiled kernel it prints kernel, target, the dtypes and shape sets that launch it, blocks (BLOCK_*
constexprs), variant (flags and specialised integers), num_warps, num_stages, registers per thread, spill stores +
loads (bytes), shared memory (bytes: Triton's dynamic allocation plus ptxas' static), and whether it compiled (else
the compiler's message). A kernel FAILS when it does not compile, spills, or needs more shared memory than the target
allows per block (opt-in maximum). Exit status 1 when any kernel fails, 2 on bad arguments or a missing Triton.

--json OUT writes one object per compiled kernel: kernel, target, dtype (comma-separated dtypes), shapes, blocks,
variant, num_warps, num_stages, registers, spills, shared_bytes, shared_limit, compiled, ok, message, launches (how
many recorded launches it covers).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import os
import re
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


@dataclass(frozen=True)
class Target:
    capability: int
    sms: int  # of the representative device (only the vocabulary splits of masked_lm_loss depend on it)
    shared_limit: int  # bytes of shared memory one block may use (the opt-in maximum)
    device: str


TARGETS: dict[str, Target] = {
    "sm_80": Target(80, 108, 166_912, "A100"),
    "sm_86": Target(86, 84, 101_376, "RTX A6000 / A10"),
    "sm_89": Target(89, 142, 101_376, "L40S / RTX 4090"),
    "sm_90": Target(90, 132, 232_448, "H100 SXM"),
}

DTYPES = ("bf16", "fp16", "fp32", "tf32")


@dataclass(frozen=True)
class Shapes:
    width: int  # d
    vocab: int  # V
    batch: int  # B × T tokens of the MLM batch
    seq_len: int
    mix_layers: int  # transformer layers of the ELC-BERT model (mixes of 1 … layers + 1 outputs)
    mix_tokens: int  # tokens of its batch


SHAPES: dict[str, Shapes] = {
    "base": Shapes(width=768, vocab=30_522, batch=256, seq_len=128, mix_layers=12, mix_tokens=256 * 128),
    "tiny": Shapes(width=128, vocab=64, batch=8, seq_len=32, mix_layers=4, mix_tokens=8 * 64),
}

MASK_RATE = 0.15


@dataclass
class Job:
    """One specialisation to compile (picklable: the kernel travels as module + name)."""

    module: str
    name: str
    target: str
    dtype: str
    signature: dict
    constexprs: dict
    attrs: dict
    options: dict
    blocks: str
    variant: str
    num_warps: int
    num_stages: int
    shapes: list[str] = field(default_factory=list)
    dtypes: list[str] = field(default_factory=list)
    launches: int = 0

    def key(self) -> str:
        """Equal for launches that compile to the same binary (whatever dtype or shape set they came from)."""
        return repr((self.module, self.name, self.target, self.signature, self.constexprs, self.attrs, self.options))


@dataclass
class Row:
    kernel: str
    target: str
    dtype: str
    shapes: str
    blocks: str
    variant: str
    num_warps: int
    num_stages: int
    registers: int | None
    spills: int | None
    shared_bytes: int | None
    shared_limit: int
    compiled: bool
    ok: bool
    message: str
    launches: int


# ------------------------------------------------------------------------------------------------ recording


def _torch_dtype(name: str):
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32, "tf32": torch.float32}[name]


def record_masked_lm_loss(shapes: Shapes, dtype: str):
    """The launches of masked_lm_loss forward + backward (with and without bias) for both masked-row counts."""
    import torch

    from bertkit.data.masking import binomial_capacity
    from bertkit.ops.triton.masked_lm_loss import masked_lm_loss_backward, masked_lm_loss_forward

    tokens = shapes.batch * shapes.seq_len
    row_counts = sorted({round(MASK_RATE * tokens), binomial_capacity(tokens, shapes.batch, MASK_RATE)})
    dt = _torch_dtype(dtype)
    weight = torch.empty(shapes.vocab, shapes.width, dtype=dt)
    bias_tensor = torch.empty(shapes.vocab, dtype=dt)
    for rows in row_counts:
        hidden = torch.empty(rows, shapes.width, dtype=dt)
        labels = torch.zeros(rows, dtype=torch.int64)
        for bias in (bias_tensor, None):
            _, lse, _, n_valid = masked_lm_loss_forward(hidden, weight, bias, labels)
            masked_lm_loss_backward(torch.ones(()), hidden, weight, bias, labels, lse, n_valid)


def record_layer_mix(shapes: Shapes, dtype: str):
    """The launches of every mix of one ELC-BERT forward and backward pass over a [layers + 1, tokens·d] buffer."""
    import torch

    from bertkit.ops.triton.layer_mix import layer_mix_backward, layer_mix_forward

    dt = _torch_dtype(dtype)
    width = shapes.mix_tokens * shapes.width
    capacity = shapes.mix_layers + 1
    buffer = torch.empty(capacity, width, dtype=dt)  # never touched: the pages are not even allocated
    grad_buffer = torch.empty(capacity, width, dtype=dt)
    grad = torch.empty(width, dtype=dt)
    for n in range(1, capacity + 1):
        logits = torch.empty(n, dtype=torch.float32)
        layers, grad_rows = buffer[:n], grad_buffer[:n]
        layer_mix_forward(layers, logits)
        layer_mix_backward(grad, layers, logits, None)
        for below in range(n + 1):
            layer_mix_backward(grad, layers, logits, grad_rows, accumulate_below=below)
            layer_mix_backward(grad, None, logits, grad_rows, accumulate_below=below)


OPS = {"masked_lm_loss": record_masked_lm_loss, "layer_mix": record_layer_mix}


def _blocks_text(constexprs: dict[str, object]) -> str:
    return " ".join(f"{k.removeprefix('BLOCK_')}={v}" for k, v in constexprs.items() if k.startswith("BLOCK_"))


def _variant_text(signature: dict[str, str], named: dict[str, object], attrs: dict) -> str:
    """What tells specialisations of one kernel apart: flags (HAS_BIAS=1), integers that equal 1 (n_layers=1; the
    launcher makes them constants), DOT=tf32, and the integer arguments that are multiples of 16 (÷16: N)."""
    names = list(signature)
    flags = []
    for k, v in named.items():
        if k.startswith("BLOCK_") or k.startswith("stride_"):
            continue
        if k == "DOT_PRECISION":
            flags.append(f"DOT={v}")
        else:
            flags.append(f"{k}={int(v) if isinstance(v, bool) else v}")
    divisible = [
        names[k[0]]
        for k, v in attrs.items()
        if signature[names[k[0]]] in ("i32", "i64") and ["tt.divisibility", 16] in [list(a) for a in v]
    ]
    return " ".join(flags) + (f" ÷16: {','.join(divisible)}" if divisible else "")


def collect(targets: list[str], dtypes: list[str], shape_names: list[str]) -> list[Job]:
    """Every distinct specialisation the launchers produce, per target (recorded, then specialised by Triton)."""
    import torch
    from triton.backends.compiler import GPUTarget
    from triton.compiler import make_backend
    from triton.runtime.jit import create_function_from_signature

    from bertkit.ops.triton import recording

    jobs: dict[str, Job] = {}
    for target_name in targets:
        target = TARGETS[target_name]
        backend = make_backend(GPUTarget("cuda", target.capability, 32))
        binders = {}
        for dtype in dtypes:
            for shape_name in shape_names:
                shapes = SHAPES[shape_name]
                for op, record in OPS.items():
                    if dtype == "tf32" and op == "layer_mix":
                        continue  # no dots: the same kernels as fp32
                    previous = torch.get_float32_matmul_precision()
                    torch.set_float32_matmul_precision("high" if dtype == "tf32" else "highest")
                    try:
                        with recording(target.sms) as recorder:
                            record(shapes, dtype)
                    finally:
                        torch.set_float32_matmul_precision(previous)
                    for launch in recorder.launches:
                        kernel = launch.kernel
                        if kernel not in binders:
                            binders[kernel] = create_function_from_signature(kernel.signature, kernel.params, backend)
                        bound, specialization, options = binders[kernel](*launch.args, **launch.kwargs)
                        opts, signature, constexprs, attrs = kernel._pack_args(
                            backend, launch.kwargs, bound, specialization, options
                        )
                        names = list(signature)
                        named = {names[k[0]]: v for k, v in constexprs.items()}
                        job = Job(
                            module=kernel.fn.__module__,
                            name=kernel.fn.__name__,
                            target=target_name,
                            dtype=dtype,
                            signature=dict(signature),
                            constexprs={k: v for k, v in constexprs.items()},
                            attrs={k: v for k, v in attrs.items()},
                            options=dict(opts.__dict__),
                            blocks=_blocks_text(named),
                            variant=_variant_text(dict(signature), named, attrs),
                            num_warps=opts.num_warps,
                            num_stages=opts.num_stages,
                        )
                        job = jobs.setdefault(job.key(), job)
                        if shape_name not in job.shapes:
                            job.shapes.append(shape_name)
                        if dtype not in job.dtypes:  # e.g. layer_mix_grad_logits: fp32 logits whatever the layers
                            job.dtypes.append(dtype)
                        job.launches += 1
    return list(jobs.values())


# ------------------------------------------------------------------------------------------------ compiling

_PTXAS = {
    "registers": re.compile(r"Used (\d+) registers"),
    "spill_stores": re.compile(r"(\d+) bytes spill stores"),
    "spill_loads": re.compile(r"(\d+) bytes spill loads"),
    "smem": re.compile(r"(\d+) bytes smem"),
}


def _first_lines(text: str, limit: int = 6) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " | ".join(lines[:limit])[:600]


def compile_job(job: Job) -> Row:
    """Compile one specialisation for its target; registers, spills and static shared memory from ptxas' log."""
    import triton
    from triton import knobs
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    target = TARGETS[job.target]
    kernel = getattr(importlib.import_module(job.module), job.name)
    knobs.nvidia.dump_ptxas_log = True
    log = io.StringIO()
    registers = spills = shared = None
    try:
        with contextlib.redirect_stdout(log):
            compiled = triton.compile(
                ASTSource(kernel, job.signature, job.constexprs, job.attrs),
                target=GPUTarget("cuda", target.capability, 32),
                options=job.options,
            )
    except Exception as e:  # noqa: BLE001 - any compiler failure is a row of the table, with its message
        message = f"{type(e).__name__}: {_first_lines(str(e))}"
        compiled_ok = False
    else:
        compiled_ok = True
        text = log.getvalue()
        found = {k: [int(x) for x in p.findall(text)] for k, p in _PTXAS.items()}
        registers = max(found["registers"], default=None)
        spills = sum(found["spill_stores"]) + sum(found["spill_loads"])
        shared = int(compiled.metadata.shared) + sum(found["smem"])
        message = "" if found["registers"] else "no ptxas log (registers unknown)"
    problems = []
    if compiled_ok:
        if registers is None:
            problems.append("registers unknown")
        if spills:
            problems.append(f"spills {spills} bytes")
        if shared is not None and shared > target.shared_limit:
            problems.append(f"shared memory {shared} > {target.shared_limit} bytes")
    ok = compiled_ok and not problems
    if problems:
        message = "; ".join(problems + ([message] if message else []))
    return Row(
        kernel=job.name.lstrip("_").removesuffix("_kernel"),
        target=job.target,
        dtype=",".join(job.dtypes),
        shapes=",".join(job.shapes),
        blocks=job.blocks,
        variant=job.variant,
        num_warps=job.num_warps,
        num_stages=job.num_stages,
        registers=registers,
        spills=spills,
        shared_bytes=shared,
        shared_limit=target.shared_limit,
        compiled=compiled_ok,
        ok=ok,
        message=message,
        launches=job.launches,
    )


def _table(rows: list[Row]) -> str:
    head = [
        "kernel",
        "target",
        "dtype",
        "shapes",
        "blocks",
        "variant",
        "warps",
        "stages",
        "regs",
        "spills",
        "shared",
        "compiled",
    ]
    body = [
        [
            r.kernel,
            r.target,
            r.dtype,
            r.shapes,
            r.blocks,
            r.variant,
            str(r.num_warps),
            str(r.num_stages),
            "-" if r.registers is None else str(r.registers),
            "-" if r.spills is None else str(r.spills),
            "-" if r.shared_bytes is None else str(r.shared_bytes),
            ("yes" if r.compiled else "no") + ("" if r.ok else f" FAIL: {r.message}"),
        ]
        for r in rows
    ]
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    lines = ["  ".join(x.ljust(w) for x, w in zip(line, widths, strict=True)).rstrip() for line in [head, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _parse_list(text: str, valid, what: str) -> list[str]:
    items = [x.strip() for x in text.split(",") if x.strip()]
    bad = [x for x in items if x not in valid]
    if not items or bad:
        raise SystemExit(f"aot_kernels: unknown {what} {', '.join(bad) or repr(text)}; choose from {', '.join(valid)}")
    return list(dict.fromkeys(items))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", default="sm_80,sm_90", help=f"comma-separated, of {', '.join(TARGETS)}")
    parser.add_argument("--dtypes", default=",".join(DTYPES), help=f"comma-separated, of {', '.join(DTYPES)}")
    parser.add_argument("--shapes", default=",".join(SHAPES), help=f"comma-separated, of {', '.join(SHAPES)}")
    parser.add_argument("--json", type=Path, default=None, help="write the rows as a JSON list to this file")
    parser.add_argument("--jobs", type=int, default=min(8, os.cpu_count() or 1), help="parallel compiles")
    args = parser.parse_args(argv)
    try:
        targets = _parse_list(args.targets, TARGETS, "target")
        dtypes = _parse_list(args.dtypes, DTYPES, "dtype")
        shape_names = _parse_list(args.shapes, SHAPES, "shape set")
    except SystemExit as e:
        print(e, file=sys.stderr)
        return 2
    if args.jobs < 1:
        print(f"aot_kernels: --jobs must be at least 1; got {args.jobs}", file=sys.stderr)
        return 2
    if args.json is not None and not args.json.parent.is_dir():
        print(f"aot_kernels: --json {args.json}: the folder {args.json.parent} does not exist", file=sys.stderr)
        return 2
    # Before triton is imported: the interpreter's @triton.jit cannot be compiled; a private cache makes every compile
    # run ptxas (whose log gives registers and spills).
    if os.environ.get("TRITON_INTERPRET") == "1" and "triton" in sys.modules:
        print(
            "aot_kernels: triton was imported with TRITON_INTERPRET=1; run this script in its own process",
            file=sys.stderr,
        )
        return 2
    os.environ.pop("TRITON_INTERPRET", None)
    cache = tempfile.TemporaryDirectory(prefix="bertkit-aot-")
    os.environ["TRITON_CACHE_DIR"] = cache.name
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # the current default, stated (silences triton's warning)
    try:
        import triton
    except ImportError:
        print("aot_kernels: triton is not installed (it comes with torch on Linux x86-64)", file=sys.stderr)
        return 2

    jobs = collect(targets, dtypes, shape_names)
    if args.jobs == 1:
        rows = [compile_job(job) for job in jobs]
    else:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            rows = list(pool.map(compile_job, jobs))
    print(
        f"triton {triton.__version__}; {len(rows)} kernel specialisations from {sum(j.launches for j in jobs)} launches"
    )
    print(_table(rows))
    failed = [r for r in rows if not r.ok]
    print(f"\n{len(rows) - len(failed)} of {len(rows)} ok" + (f"; {len(failed)} FAILED" if failed else ""))
    if args.json is not None:
        tmp = args.json.with_name(args.json.name + f".tmp-{os.getpid()}")
        tmp.write_text(json.dumps([asdict(r) for r in rows], indent=1) + "\n")
        tmp.replace(args.json)
    cache.cleanup()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
