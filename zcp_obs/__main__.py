"""``python -m zcp_obs``: the same as the ``zcp-obs`` command."""

from zcp_obs.cli import main

main()
