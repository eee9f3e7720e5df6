"""``python -m deepinterest`` is the ``di`` command."""

from .cli import app

app()
