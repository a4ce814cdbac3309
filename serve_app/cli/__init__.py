"""The ``bandit-serve`` command line (:mod:`~serve_app.cli.commands`) and its traffic
simulator (:mod:`~serve_app.cli.simulate`)."""

from serve_app.cli.commands import app, main

__all__ = ["app", "main"]
