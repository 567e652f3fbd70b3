"""``python -m sbdeploy`` runs the command line."""

from sbdeploy.cli import main

main()
