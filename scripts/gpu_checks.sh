#!/usr/bin/env bash
# Every GPU check of the open issues (training engine, NarrowBERT / ELC-BERT / layer_mix, masked_lm_loss,
# NextLevelBERT's encode) in one call on a CUDA machine, each step under its own time limit so that one slow step
# cannot starve the others, in priority order. Results go to $OUT (the device tool's folder that comes back; default
# /tmp/bertkit-gpu-checks): summary.md (the tail of every step and its exit code) and one full log per step.
#
# The device machine has torch, triton, transformers, sentence-transformers, typer, rich, xxhash and pytest but not
# bertkit's Rust extension: build it here (`make build` leaves bertkit/_core.abi3.so, abi3, so Python 3.12 there
# loads it) and carry it, with gpu/data (`python scripts/gpu_data.py`: news.jsonl, vocab.txt and MiniLM with float16
# weights, 57 MiB; used as $BERTKIT_DATA when present):
#
#   run(command="bash scripts/gpu_checks.sh", timeout_s=590, carry=["bertkit/_core.abi3.so", "gpu/data"])
#
# The step limits add up to 570 s (not yet run on a GPU: no device was lent so far); --repeat 2 by default
# (GPU_CHECKS_REPEAT). Without CUDA it refuses to start unless
# called with --allow-cpu (a mechanics check of the script itself: every step then reports its CPU fallback or skip).
set -u -o pipefail
cd "$(dirname "$0")/.."
[[ -z "${BERTKIT_DATA:-}" && -d gpu/data ]] && BERTKIT_DATA=$PWD/gpu/data
export PYTHONUNBUFFERED=1 BERTKIT_DATA="${BERTKIT_DATA:-$PWD/data}" PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT="${OUT:-/tmp/bertkit-gpu-checks}"
REPEAT="${GPU_CHECKS_REPEAT:-2}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
SUMMARY="$OUT/summary.md"
: >"$SUMMARY"

if ! "$PY" -c "import bertkit._core" 2>/dev/null; then
    echo "bertkit/_core.abi3.so is missing or does not load: run \`make build\` and carry bertkit/_core.abi3.so" | tee -a "$SUMMARY"
    exit 2
fi
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    if [[ "${1:-}" != "--allow-cpu" ]]; then
        echo "no CUDA device: these are the GPU checks (pass --allow-cpu to check the script's mechanics)" | tee -a "$SUMMARY"
        exit 3
    fi
    echo "(--allow-cpu: no CUDA; the steps show their CPU fallbacks or skips)" >>"$SUMMARY"
fi
{
    echo "# bertkit GPU checks, $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "nvidia-smi: none"
    "$PY" -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" 2>&1
} >>"$SUMMARY"

# step NAME SECONDS CMD...: run CMD under a time limit, full log to $OUT/NAME.log, its tail and exit code to summary.
step() {
    local name=$1 limit=$2
    shift 2
    local t0=$SECONDS
    timeout --kill-after=10 "$limit" "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    {
        echo
        echo "## $name (exit $rc$([[ $rc == 124 ]] && echo ": hit its ${limit} s limit"), $((SECONDS - t0)) s): $*"
        echo '```'
        tail -n 25 "$OUT/$name.log"
        echo '```'
    } >>"$SUMMARY"
}

# 1. bf16 / CUDA correctness: the Triton kernels against their references on the GPU, device-side masking without
#    host syncs, NarrowBERT under bf16 autocast.
#    The kernels run at the launch configurations scripts/aot_kernels.py compiled without a GPU.
step tests 95 "$PY" -m pytest -q -p no:cacheprovider -m "gpu or triton" \
    tests/ops tests/test_masking.py tests/test_models_narrowbert.py
# 2. masked_lm_loss against gather + matmul + cross_entropy and the full head (M = 0.15*256*128, d 768, V 30522).
step masked_lm_loss 50 "$PY" benchmarks/masked_lm_loss_bench.py
# 3. Training throughput / MFU / peak memory vs HF BertForMaskedLM (base, seq 128, bf16).
step train 100 "$PY" benchmarks/train_bench.py --cuda-only --repeat "$REPEAT"
# 4. layer_mix against the original's eager loop and a tensordot over stacked outputs (12 layers, 768, 256x128).
step layer_mix 40 "$PY" benchmarks/layer_mix_bench.py
# 5. NarrowBERT step and seq-512 inference vs BERT; 6. ELC-BERT step vs LTG-BERT (base, bf16).
step narrow 60 "$PY" benchmarks/narrow_bench.py --cuda-only --repeat "$REPEAT"
step elc 60 "$PY" benchmarks/elc_bench.py --cuda-only --repeat "$REPEAT"
# 7. The CLI end to end on the GPU: prepare news, 60 steps of the small preset (bf16 autocast, fused AdamW, MFU in
#    the log), eval mlm.
export PY OUT
step train_smoke 65 bash -c '
    work=$(mktemp -d)
    news="$BERTKIT_DATA/news.jsonl"; [[ -f $news ]] || news="$BERTKIT_DATA/news.txt"
    "$PY" -m bertkit_cli prepare "$news" --tokenizer "$BERTKIT_DATA/vocab.txt" --out "$work/news" -q &&
        "$PY" -m bertkit_cli train --arch bert --preset small --data "$work/news" --out "$work/run" --max-steps 60 \
            --batch-size 64 --seq-len 128 --eval-every 60 --log-every 10 &&
        "$PY" -m bertkit_cli eval mlm "$work/run" --data "$work/news" --show 1'
# 8. NextLevelBERT: `bertkit encode` (bf16, length-sorted batches) vs SentenceTransformer.encode (defaults, fp32) on
#    the same news chunks of 256 tokens; target >= 3x chunks/s.
step encode 60 "$PY" benchmarks/nextlevel_bench.py --skip-retrieval --repeat "$REPEAT" --work "$(mktemp -d)"
# 9. The ahead-of-time compile of every kernel for this device's architecture (registers, spills, shared memory per
#    kernel; the same table CI makes for sm_80 and sm_90 without a GPU), beside what the device reports.
step aot 40 bash -c '
    cc=$("$PY" -c "import torch; print(\"sm_%d%d\" % torch.cuda.get_device_capability())" 2>/dev/null || echo sm_90)
    case $cc in sm_80 | sm_86 | sm_89 | sm_90) ;; *) echo "($cc has no row in aot_kernels.py: compiling for sm_90)"; cc=sm_90 ;; esac
    "$PY" scripts/aot_kernels.py --targets "$cc" --dtypes bf16,fp32 --shapes base --json "$OUT/aot.json"'
echo >>"$SUMMARY"
echo "done in ${SECONDS} s" >>"$SUMMARY"
