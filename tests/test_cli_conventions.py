"""CLI conventions: --version, a default shown for every option, choices listed from the library's own lists,
the examples epilogs."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

import bertkit
from bertkit_cli import app

runner = CliRunner()


def _commands():
    """(path, click command) of every leaf command."""
    root = typer.main.get_command(app)
    todo = [((), root)]
    while todo:
        path, cmd = todo.pop()
        sub = getattr(cmd, "commands", None)
        if sub:
            todo += [((*path, name), c) for name, c in sub.items()]
        else:
            yield path, cmd


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"bertkit {bertkit.__version__}"


def test_every_option_shows_its_default():
    missing = []
    for path, cmd in _commands():
        ctx = typer.main._click.Context(cmd, info_name=path[-1])
        for param in cmd.params:
            if param.param_type_name != "option" or param.required or param.name == "help":
                continue
            record = param.get_help_record(ctx)
            if record is None or "default" not in record[1].lower():
                missing.append(f"{' '.join(path)} {param.opts[0]}")
    assert not missing, "options without a shown default:\n" + "\n".join(missing)


def test_train_lists_the_library_choices():
    from bertkit.catalog import ARCHITECTURE_NAMES, PRESET_NAMES
    from bertkit.train.config import MASKING, OPTIMIZERS, SCHEDULES, VIEWS

    result = runner.invoke(app, ["train", "--help"], terminal_width=400, env={"COLUMNS": "400"})
    assert result.exit_code == 0
    text = result.output
    for names in (ARCHITECTURE_NAMES, VIEWS, MASKING, OPTIMIZERS, SCHEDULES):
        assert "|".join(names) in text, names
    for presets in PRESET_NAMES.values():
        assert " | ".join(presets) in text
    assert "Examples:" in text and "--resume" in text and "[default: (1000)]" in text


def test_every_command_keeps_its_examples():
    for path, cmd in _commands():
        assert cmd.epilog and "Examples:" in cmd.epilog, " ".join(path)
