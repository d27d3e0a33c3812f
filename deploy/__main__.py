"""``python -m gridwatch.deploy`` is the ``gridwatch`` command (for environments without the script)."""

from gridwatch.deploy.cli import main

main()
