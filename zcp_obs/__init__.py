"""The application: the ``zcp-obs`` root command, which mounts every part's command group."""
