"""`bertkit train`: pretrain an encoder from a prepared dataset (thin wrapper over `bertkit.train`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from bertkit.catalog import ARCHITECTURE_NAMES, presets_help
from bertkit.train.config import DEVICES, MASKING, OPTIMIZERS, PRECISIONS, SCHEDULES, VIEWS, TrainConfig
from bertkit_cli._common import PlainLines, choice, console, interactive, user_errors


def register(app: typer.Typer) -> None:
    app.command(
        "train",
        epilog=(
            "Examples:\n\n"
            "  bertkit train --arch bert --preset tiny --data data/ds --out runs/tiny --max-steps 200\n\n"
            "  bertkit train --arch elc-bert --preset tiny --model variant=zero --data data/ds --out runs/elc\n\n"
            "  bertkit train --data data/elc --out runs/elc-small --config configs/elc-bert-small.toml\n\n"
            "  bertkit train --arch narrowbert --preset base --full-layers 2 --data data/ds --out runs/narrow\n\n"
            "  bertkit train --data data/nsp --out runs/base --config configs/bert-base-google.toml\n\n"
            "  bertkit train --out runs/base --resume\n\n"
            "  bertkit train --out runs/base --resume --max-steps 30000\n\n"
            "  bertkit train --config runs/base/config.json --out runs/base-2 --lr 5e-4\n\n"
            "  torchrun --nproc_per_node=8 -m bertkit_cli train --data data/ds --out runs/base --config run.toml\n\n"
            "  bertkit train --arch nextlevel --preset minilm --data data/books-emb --out runs/nl --seq-len 512"
        ),
    )(train)


def _model_overrides(items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs → model-config overrides; a VALUE that parses as JSON (1e-7, 0.1, true, null) is that
    value, anything else a string (``variant=zero``)."""
    from bertkit.exceptions import ConfigError

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--model {item!r}: expected KEY=VALUE (e.g. --model variant=zero)")
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value
    return out


def _options_to_overrides(**options: Any) -> dict[str, Any]:
    """The flags that were given (None = not given, so the TOML file or the default applies)."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in options.items() if v is not None}


def _default(name: str) -> str:
    """The help's default of a run option: TrainConfig's (a --config file or, with --resume, the run's saved
    config comes first)."""
    value = getattr(TrainConfig(), name)
    return "true" if value is True else "false" if value is False else str(value)


def train(
    data: Annotated[
        Path | None, typer.Option("--data", "-d", help="Prepared dataset directory.", show_default="from --config")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Run directory (checkpoints, metrics, config.json).")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="TOML run file, or a run's config.json; flags given here override it.",
            show_default="none",
        ),
    ] = None,
    arch: Annotated[
        choice(ARCHITECTURE_NAMES) | None, typer.Option(help="Architecture.", show_default=_default("arch"))
    ] = None,
    preset: Annotated[
        str | None, typer.Option(help=f"Model preset: {presets_help()}.", show_default=_default("preset"))
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            "-m",
            help="Model-config override KEY=VALUE (repeatable), e.g. variant=base.",
            show_default="the preset's",
        ),
    ] = None,
    full_layers: Annotated[
        int | None,
        typer.Option(
            help="narrowbert: full layers before the narrow ones (model option full_layers).",
            show_default="the preset's",
        ),
    ] = None,
    view: Annotated[choice(VIEWS) | None, typer.Option(help="Training samples.", show_default=_default("view"))] = None,
    max_steps: Annotated[
        int | None,
        typer.Option(
            help="Optimiser steps of the run; with --resume a new total extends the run (README: the schedule is "
            "stretched).",
            show_default=_default("max_steps"),
        ),
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Sequences per rank per micro-batch.", show_default=_default("batch_size"))
    ] = None,
    seq_len: Annotated[
        int | None,
        typer.Option(help="Sequence length (replaces the file's phases).", show_default=_default("seq_len")),
    ] = None,
    grad_accum: Annotated[
        int | None, typer.Option(help="Micro-batches per optimiser step.", show_default=_default("grad_accum"))
    ] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate.", show_default=_default("lr"))] = None,
    optimizer: Annotated[
        choice(OPTIMIZERS) | None, typer.Option(help="Optimiser.", show_default=_default("optimizer"))
    ] = None,
    schedule: Annotated[
        choice(SCHEDULES) | None,
        typer.Option(help="Learning-rate schedule after warmup.", show_default=_default("schedule")),
    ] = None,
    warmup: Annotated[
        float | None,
        typer.Option(
            help="Warmup: >= 1 a number of steps, < 1 a fraction of max-steps.", show_default=_default("warmup")
        ),
    ] = None,
    masking: Annotated[
        choice(MASKING) | None, typer.Option(help="Masking strategy.", show_default=_default("masking"))
    ] = None,
    precision: Annotated[
        choice(PRECISIONS) | None,
        typer.Option(help="auto = bf16 autocast on CUDA, fp32 on CPU.", show_default=_default("precision")),
    ] = None,
    device: Annotated[
        choice(DEVICES) | None, typer.Option(help="auto = CUDA when available.", show_default=_default("device"))
    ] = None,
    compile: Annotated[
        bool | None,
        typer.Option("--compile/--no-compile", help="torch.compile the model.", show_default=_default("compile")),
    ] = None,
    fsdp: Annotated[
        bool | None,
        typer.Option("--fsdp/--no-fsdp", help="FSDP under torchrun (large models).", show_default=_default("fsdp")),
    ] = None,
    eval_every: Annotated[
        int | None,
        typer.Option(help="Evaluate every N steps (0 = never).", show_default=_default("eval_every")),
    ] = None,
    checkpoint_every: Annotated[
        int | None,
        typer.Option(help="Checkpoint every N steps (0 = at the end).", show_default=_default("checkpoint_every")),
    ] = None,
    log_every: Annotated[
        int | None,
        typer.Option(
            help="Metrics record (and, in a non-terminal log, a progress line) every N steps.",
            show_default=_default("log_every"),
        ),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed of init, data order and masking.", show_default=_default("seed"))
    ] = None,
    init_from: Annotated[
        Path | None,
        typer.Option(
            help="Start from a Hugging Face BERT directory (nextlevel: the encoder whose layers it takes).",
            show_default="none",
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue the run in --out from its checkpoint; its config.json supplies every option not given.",
            show_default="off",
        ),
    ] = False,
    verify_data: Annotated[
        bool | None,
        typer.Option(
            "--verify-data/--no-verify-data",
            help="Check each dataset shard's checksum on first read.",
            show_default=_default("verify_data"),
        ),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar or progress lines.", show_default="off")
    ] = False,
) -> None:
    """Pretrain an encoder: masking on the fly, evaluation, atomic checkpoints, exact resume."""
    from bertkit.exceptions import ConfigError
    from bertkit.train.config import resume_config

    if warmup is not None and warmup >= 1:
        warmup = int(warmup)  # a step count
    overrides = _options_to_overrides(
        data=data,
        out=out,
        arch=arch,
        preset=preset,
        view=view,
        max_steps=max_steps,
        batch_size=batch_size,
        seq_len=seq_len,
        grad_accum=grad_accum,
        lr=lr,
        optimizer=optimizer,
        schedule=schedule,
        warmup=warmup,
        masking=masking,
        precision=precision,
        device=device,
        compile=compile,
        fsdp=fsdp,
        eval_every=eval_every,
        checkpoint_every=checkpoint_every,
        log_every=log_every,
        seed=seed,
        init_from=init_from,
        verify_data=verify_data,
    )
    with user_errors():
        model_overrides = _model_overrides(model or [])
        if full_layers is not None:
            model_overrides["full_layers"] = full_layers
        if model_overrides:
            overrides["model"] = model_overrides
        if resume and out is None:
            raise ConfigError("--resume needs --out RUN, the run directory to continue")
        if config is not None:
            cfg = TrainConfig.from_file(config, overrides)
        elif resume and (out / "config.json").is_file():  # the run alone: its saved config, flags override
            cfg = resume_config(out, overrides)
        else:
            cfg = TrainConfig.from_dict(overrides, source="command line")
        from bertkit.train import trainer

        with _TrainProgress(enabled=not quiet) as progress:
            summary = trainer.train(cfg, on_event=progress.on_event, resume=resume)
    for note in summary.notes:
        console.print(f"[yellow]note[/]: {escape(note)}", highlight=False)
    where = escape(str(summary.checkpoint)) if summary.checkpoint else "none"
    if summary.interrupted:
        text = f"[yellow]interrupted[/] at step {summary.step}; checkpoint {where}; continue with --resume"
        console.print(text, highlight=False)
        raise typer.Exit(130)
    loss = f"{summary.final_loss:.4f}" if summary.final_loss is not None else "n/a"
    line = f"[green]done[/]: {summary.step} steps, final loss {loss}, checkpoint {where}"
    if summary.eval and "mlm_loss" in summary.eval:
        e = summary.eval
        line += f", eval MLM loss {e['mlm_loss']:.4f} (acc {e['mlm_accuracy']:.3f}, ppl {e['perplexity']:.1f})"
    console.print(line, highlight=False)


class _TrainProgress:
    """Progress fed by the trainer's events: a rich bar on a terminal (step, loss, tokens/s, MFU on GPU); in a
    non-terminal log (batch job, ``| tee``, CI) one plain line per metrics record (every ``log_every`` steps) with
    step, loss, lr, tokens/s and ETA."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.progress: Any = None
        self.task: Any = None
        self.plain: PlainLines | None = None
        self.first_step = 0

    def __enter__(self) -> _TrainProgress:
        return self

    def _start(self, event: dict[str, Any]) -> None:
        self.first_step = event["step"]
        if not self.enabled:
            return
        if not interactive():
            self.plain = PlainLines("train")
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[detail]}"),
            console=console,
            transient=False,
        )
        self.progress.__enter__()  # drawn from the start event on: bad input shows only its error
        self.task = self.progress.add_task("train", total=event["max_steps"], completed=event["step"], detail="")

    def _plain_line(self, event: dict[str, Any]) -> None:
        assert self.plain is not None
        step, total = event["step"], event.get("max_steps")
        text = f"step {step}/{total}  loss {event['loss']:.4f}  lr {event['lr']:.2e}"
        text += f"  {event['tokens_per_s']:,.0f} tok/s"
        if event.get("mfu") is not None:
            text += f"  MFU {100 * event['mfu']:.1f}%"
        left = None if total is None else total - self.first_step
        text += f"  ETA {self.plain.eta(step - self.first_step, left)}"
        self.plain.emit(text)

    def on_event(self, event: dict[str, Any]) -> None:
        kind = event["event"]
        if kind == "start":
            console.print(
                f"run {escape(event['run_dir'])}: {event['parameters']:,} parameters on {event['device']}"
                f" x{event['world_size']}",
                highlight=False,
            )
            self._start(event)
        elif kind == "step" and self.progress is not None and self.task is not None:
            self.progress.update(self.task, completed=event["step"])
        elif kind == "log" and self.plain is not None:
            self._plain_line(event)
        elif kind == "log" and self.progress is not None and self.task is not None:
            detail = f"loss {event['loss']:.4f}  lr {event['lr']:.2e}  {event['tokens_per_s']:,.0f} tok/s"
            if event.get("mfu") is not None:
                detail += f"  MFU {100 * event['mfu']:.1f}%"
            self.progress.update(self.task, completed=event["step"], detail=detail)
        elif kind == "eval":
            if "mlm_loss" in event:
                text = f"eval @ {event['step']}: MLM loss {event['mlm_loss']:.4f}, acc {event['mlm_accuracy']:.3f}"
                if "nsp_accuracy" in event:
                    text += f", NSP acc {event['nsp_accuracy']:.3f}"
            else:
                text = f"eval @ {event['step']}: {event.get('note', 'no data')}"
            console.print(escape(text), highlight=False)
        elif kind == "checkpoint":
            console.print(f"checkpoint {escape(event['path'])}", highlight=False, style="dim")
        elif kind == "nonfinite":
            console.print(
                f"[red]non-finite loss[/] at step {event['step']} (policy: {event['policy']})", highlight=False
            )
        elif kind == "warning":
            console.print(f"[yellow]warning[/]: {escape(event['message'])}", highlight=False)
        elif kind == "resumed":
            console.print(f"resumed from {escape(event['checkpoint'])} at step {event['step']}", highlight=False)

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)
