"""`--log-format json`: one JSON object per log record and line, for log
shippers (journald, Vector, Loki, Elastic). The fields are those of the text
format (ts, level, logger, message), plus any `extra=` a record carries
(agent, idempotency_key, ...) and the traceback as `exc_info`."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

# What every LogRecord has: anything else on one came from `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                obj[key] = value
        if record.exc_info:
            obj["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(obj, default=str, ensure_ascii=False)
