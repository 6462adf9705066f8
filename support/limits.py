"""The bounds of every value taken from outside (docs/security.md, "Limits").

One place for the maxima both doors share: the HTTP API (`api/bounds.py` checks headers,
paths and query parameters before any handler runs; `serviceorders.httpserver` bounds the
header section and the time a client may take to send a request) and the Kafka intake
(`consumers/envelope.py`). The request and envelope models bound their own string fields
with `max_length` (tests/unit/test_limits.py walks them all); values above a bound are
refused naming the field (HTTP: a TMF `Error`, 431 for a header, 400 otherwise; Kafka: a
dead letter), before anything is written.
"""

from __future__ import annotations

# ----------------------------------------------------------------- request headers (HTTP)
# Ids a client may give, carried into the events' envelope (`CommandContext`).
MAX_REQUEST_ID = 200  # X-Request-Id
MAX_CORRELATION_ID = 200  # X-Correlation-Id (and a Kafka envelope's correlationId)
MAX_CAUSATION_ID = 200  # X-Causation-Id
# W3C Trace Context: version 00 is exactly 55 characters; a later version may append fields
# ("parse the known fields, ignore the rest"), so the bound leaves room for them.
MAX_TRACEPARENT = 256
# Idempotency-Key of POST /serviceOrder: refused above the bound (never cut, so two keys are
# always compared whole).
IDEMPOTENCY_KEY_MAX = 200

# Header name (lower case) -> (the name as documented, its maximum length in characters).
HEADER_MAXIMA: dict[str, tuple[str, int]] = {
    "x-request-id": ("X-Request-Id", MAX_REQUEST_ID),
    "x-correlation-id": ("X-Correlation-Id", MAX_CORRELATION_ID),
    "x-causation-id": ("X-Causation-Id", MAX_CAUSATION_ID),
    "traceparent": ("traceparent", MAX_TRACEPARENT),
    "idempotency-key": ("Idempotency-Key", IDEMPOTENCY_KEY_MAX),
}

# The whole request head (request line and every header) the HTTP server reads before it
# answers 431 and closes the connection; the application never sees such a request.
MAX_HEADER_SECTION = 64 * 1024
# A client has this long, from the first byte of a request (or from opening the
# connection), to send the whole head; then, from the end of the head, this long to send the
# whole body. Otherwise the server answers 408 (if it can) and closes the connection.
# Settings: SERVICEORDERS_HTTP_HEADER_TIMEOUT, SERVICEORDERS_HTTP_BODY_TIMEOUT.
HEADER_TIMEOUT = 10.0
BODY_TIMEOUT = 30.0
# A request body (JSON or a console form): 413 above it, counted as it streams in.
MAX_BODY_BYTES = 1_048_576

# ----------------------------------------------------------------- paths and query strings
MAX_PATH = 2048  # the decoded path, in characters
MAX_PATH_SEGMENT = 200  # one segment of the path: an order, draft, item, hub or spec id
MAX_QUERY_STRING = 8192  # the raw query string, in bytes
MAX_QUERY_VALUE = 1000  # one query parameter's value (filters, fields, sort, paging)
MAX_QUERY_PARAMETERS = 64  # query parameters in one request

# ----------------------------------------------------------------- strings in bodies
# The request and envelope models use these for fields without a more specific bound.
MAX_ID = 200  # ids and references given by clients
MAX_NAME = 500  # names
MAX_HREF = 2000  # hrefs and URLs
MAX_TYPE = 200  # @type, @baseType, @referredType, valueType, relationship types, states
MAX_FORM_FIELD = 10_000  # one field of a console form (longer text fields are refused)
