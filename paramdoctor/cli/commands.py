"""The registry of command modules: each exposes ``register(app)``.

Adding a command is one module and one line here.
"""

from __future__ import annotations

from paramdoctor.cli import (
    ablate_cmd,
    compare_cmd,
    diagnose_cmd,
    import_cmd,
    lr_find_cmd,
    rules_cmd,
    sync_cmd,
    train_cmd,
    treat_cmd,
    tune_cmd,
    ui_cmd,
)

ALL = [
    train_cmd.register,
    rules_cmd.register,
    diagnose_cmd.register,
    compare_cmd.register,
    import_cmd.register,
    sync_cmd.register,
    treat_cmd.register,
    ablate_cmd.register,
    lr_find_cmd.register,
    tune_cmd.register,
    ui_cmd.register,
]
