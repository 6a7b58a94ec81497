"""Errors that the CLI turns into exit codes (see docs/cli.md)."""


class UsageError(Exception):
    """Bad flags or unreadable/malformed input: one line on stderr, exit 2."""


EXIT_OK = 0
EXIT_FINDINGS = 1  # an error finding or a failed bench gate (--strict: warnings too)
EXIT_USAGE = 2
EXIT_INTERNAL = 3
