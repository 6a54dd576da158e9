"""One module per sub-command: ``add_parser(subparsers)`` and ``run(args) -> int``.

Command modules import nothing heavy at module level (no Textual), so that
``observatory snapshot`` stays a quick command.
"""
