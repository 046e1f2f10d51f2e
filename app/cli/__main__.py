"""``python -m app.cli`` runs the ``raytrade`` command."""

from app.cli import main

main()
