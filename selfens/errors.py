"""Expected failures: input or settings a user can fix.

The CLI prints their message on one line, without a traceback, and exits with status 2
(`--debug` or SELFENS_DEBUG=1 shows the traceback). Each message says what was wrong, where
(file, line, field or option) and what to do.
"""


class SelfensError(Exception):
    """A failure the user can fix; the message says what, where and what to do."""


class ConfigError(SelfensError, ValueError):
    """A setting that cannot work: an unknown model, a bad value, a method that does not fit the prompt."""
