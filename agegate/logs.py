"""Logs: one JSON line per event (structlog), with a redaction layer in front of the renderer.

Every record goes through the same pipeline, whether it comes from a structlog logger
(`get_logger`), a plain `logging` logger (SQLAlchemy, gunicorn, libraries) or gunicorn's
access log. The request id and the case id, bound as context variables by the web edge and
the worker, are merged into every line written while they are bound.

The redaction layer is the last line of defence, not the first: agegate never passes a birth
date, an API key, a secret or flag evidence to a logger. It still scrubs, from every field and
the message, anything that looks like a date, an API key, a bearer token or a PEM block, and it
blanks every field whose name says it is one (`date_of_birth`, `authorization`, `evidence`...).
A date in a message is therefore logged as "[redacted]" too: privacy wins over convenience.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Mapping
from typing import IO, Any

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

REDACTED = "[redacted]"

_SENSITIVE_NAME = re.compile(
    r"birth|dob|api_?key|authorization|secret|password|passwd|token|private|signing_key"
    r"|evidence|cookie|credential",
    re.IGNORECASE,
)
_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_SENSITIVE_TEXT = re.compile(
    "|".join(
        [
            r"-----BEGIN [A-Z ]+-----.*?(?:-----END [A-Z ]+-----|$)",  # PEM keys
            r"\bagk_[0-9a-f]+_[A-Za-z0-9_\-]+",  # agegate API keys
            r"\bbearer\s+\S+",
            # AWS: a session token (a header, a presigned URL's parameter), the signature's
            # credential scope and signature, and access key ids wherever they appear.
            r"x-amz-security-token['\"]?\s*[:=]\s*b?['\"]?[^'\"\s,&}]+",
            r"\b(?:credential|signature)=[^'\"\s,&}]+",
            r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b",
            r"\b\d{4}[-/.]\d{1,2}(?:[-/.]\d{1,2})?\b",  # 2013-05-04, 2013/5/4, 2013-05
            r"\b\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}\b",  # 04/05/2013, 4.5.2013, 05-04-13
            r"\b(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\b",  # 20130504
            rf"\b\d{{1,2}}(?:st|nd|rd|th)?\s+{_MONTH},?\s+\d{{4}}\b",  # 4 May 2013
            rf"\b{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}\b",  # May 4, 2013
        ]
    ),
    re.IGNORECASE | re.DOTALL,
)
# Fields the pipeline itself adds after redaction; they never carry caller data.
_OWN_FIELDS = frozenset({"timestamp", "level", "logger", "pid"})


def scrub(text: str) -> str:
    """`text` with every date, key, token and PEM block replaced by "[redacted]"."""
    return _SENSITIVE_TEXT.sub(REDACTED, text)


def _clean(name: str, value: Any) -> Any:
    if _SENSITIVE_NAME.search(name):
        return REDACTED
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {str(k): _clean(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_clean("", v) for v in value]
    return scrub(str(value))  # dates, datetimes, UUIDs, exceptions...: as their text


def redact(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """The redaction processor: runs on every event, after exceptions are formatted."""
    return {k: v if k in _OWN_FIELDS else _clean(k, v) for k, v in event_dict.items()}


def _gunicorn_access(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """gunicorn's access log passes its atoms as the record's arguments: keep a few as
    fields. The path is logged without its query string. Other records' arguments are in
    their message already."""
    atoms = event_dict.pop("positional_args", None)
    record = event_dict.get("_record")
    if record is None or record.name != "gunicorn.access" or not isinstance(atoms, Mapping):
        return event_dict
    event_dict.update(
        event="request",
        method=atoms.get("m"),
        path=atoms.get("U"),
        status=int(atoms.get("s") or 0),
        duration_ms=round(int(atoms.get("D") or 0) / 1000, 3),
    )
    request_id = atoms.get("{x-request-id}o")
    if request_id and request_id != "-":
        event_dict["request_id"] = request_id
    return event_dict


def _add_pid(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    event_dict["pid"] = os.getpid()  # which gunicorn worker or agegate worker wrote it
    return event_dict


_SHARED: list[Processor] = [
    structlog.contextvars.merge_contextvars,
    _add_pid,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
]


class JSONFormatter(structlog.stdlib.ProcessorFormatter):
    """A logging formatter that writes one redacted JSON object per record."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                redact,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.JSONRenderer(),
            ],
            foreign_pre_chain=[*_SHARED, _gunicorn_access],
            pass_foreign_args=True,
        )


def configure_structlog() -> None:
    """Route structlog loggers through the standard library, so that every record meets the
    same handlers (and pytest's caplog). Idempotent; cheap."""
    if structlog.is_configured():
        return
    structlog.configure(
        processors=[*_SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def configure(
    level: str = "INFO", stream: IO[str] | None = None, library_level: str = "WARNING"
) -> None:
    """Make this process write JSON lines to `stream` (stderr): `agegate worker` and the other
    commands. gunicorn does the same through config/gunicorn.conf.py.

    agegate's own loggers log at `level`; every other logger (botocore, urllib3,
    SQLAlchemy...) at `library_level`, since a library's DEBUG lines may carry request
    headers and credentials."""
    configure_structlog()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JSONFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(library_level.upper())
    logging.getLogger("agegate").setLevel(level.upper())


def logging_config(level: str, library_level: str = "WARNING") -> dict[str, Any]:
    """gunicorn's `logconfig_dict`: its own loggers and the application's, as JSON lines."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JSONFormatter}},
        "handlers": {"json": handler},
        "root": {"level": library_level.upper(), "handlers": ["json"]},
        "loggers": {
            "agegate": {"level": level.upper()},
            "gunicorn.error": {"level": level.upper(), "handlers": ["json"], "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["json"], "propagate": False},
        },
    }


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structlog logger: `log.info("case.completed", case_id=...)`."""
    configure_structlog()
    return structlog.stdlib.get_logger(name)
