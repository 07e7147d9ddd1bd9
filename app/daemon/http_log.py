"""The control API's HTTP server log: a malformed request is one line, not a traceback.

aiohttp answers a request it cannot parse (no Host header, a bad request line, a bad
header) with a 400 and logs the parser's exception with its traceback at ERROR. A body it
cannot decode (bad chunking, a bad Content-Encoding) fails in the handler, which answers
400, and aiohttp logs the same error again, with a traceback, as it drains the rest of the
body. Both are the client's mistake, not the daemon's: each becomes one WARNING line naming
the problem. Every other record, such as a handler's own exception, keeps its traceback.
"""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import HttpProcessingError

LOGGER_NAME = "app.daemon.control_api.http"


class MalformedRequestOneLine(logging.Filter):
    """Turns a record carrying an HTTP parse error into one line without a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = parse_error(record.exc_info[1] if record.exc_info else None)
        if error is not None:
            record.msg = "refused a malformed request (%d): %s"
            record.args = (error.code, one_line(error.message))
            record.exc_info = record.exc_text = None
            if record.levelno > logging.WARNING:
                record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def parse_error(error: BaseException | None) -> HttpProcessingError | None:
    """The parser's error behind ERROR: itself, or the cause of aiohttp's
    ``RequestPayloadError`` for a body that could not be decoded."""
    while error is not None:
        if isinstance(error, HttpProcessingError):
            return error
        error = error.__cause__
    return None


def one_line(message: str) -> str:
    """aiohttp's parse messages span lines and point at the bad byte with a caret line."""
    parts = [line.strip() for line in message.splitlines()]
    return " ".join(part for part in parts if part.strip("^ ")) or "bad request"


def http_server_logger() -> logging.Logger:
    """The logger to hand aiohttp's server, with the one-line filter on it (added once)."""
    logger = logging.getLogger(LOGGER_NAME)
    if not any(isinstance(f, MalformedRequestOneLine) for f in logger.filters):
        logger.addFilter(MalformedRequestOneLine())
    return logger
