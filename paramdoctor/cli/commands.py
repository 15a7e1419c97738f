"""The registry of command modules: each exposes ``register(app)``.

Adding a command is one module and one line here.
"""

from __future__ import annotations

from paramdoctor.cli import train_cmd

ALL = [
    train_cmd.register,
]
