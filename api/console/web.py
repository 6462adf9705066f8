"""Console plumbing: templates, the visit (session, actor, CSRF), form bodies, the order a
URL names, and the mapping of refusals to HTML pages from the one table, `answer_for` (the
console's edge, as `api/errors.py` is the API's). Writes go through the REST doors' own
`api.common.handle`: the command, as the signed-in actor, through `ServiceOrders.handle`."""

from __future__ import annotations

import functools
import hmac
import json
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote
from uuid import UUID

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from serviceorders.api.common import ctx_of
from serviceorders.api.console.session import (
    COOKIE,
    Session,
    Sessions,
    SessionStore,
    StoreUnavailable,
    secret_of,
)
from serviceorders.api.context import ApiContext
from serviceorders.api.errors import ApiError
from serviceorders.audit import access_log
from serviceorders.domain.errors import DomainError, OrderNotFound, WriteTimeout, answer_for
from serviceorders.domain.lifecycle import Action, may
from serviceorders.domain.order import ServiceOrder
from serviceorders.domain.values import Actor, Role
from serviceorders.storage.db import ReadDb
from serviceorders.support.isotime import iso, parse
from serviceorders.support.limits import MAX_FORM_FIELD, MAX_ID
from starlette.datastructures import URL

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
PREFIX = "/console"
MAX_FIELDS = 1000

templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _when(value: Any) -> str:
    """A time for people: `2024-05-01 10:02 UTC` (ISO strings and datetimes alike)."""
    if value in (None, ""):
        return ""
    if isinstance(value, str):
        try:
            value = parse(value)
        except ValueError:
            return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    if isinstance(value, date):
        return iso(value)
    return str(value)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return ""
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h {minutes % 60} min"
    return f"{minutes // (24 * 60)} days"


def _value_text(value: Any) -> str:
    """A value of a proposal's diff for people: text as it is, anything else as compact
    JSON (without the empty attributes of an item)."""
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        value = {k: v for k, v in value.items() if v not in (None, [], {}, "")}
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(", ", ": "))


templates.filters["when"] = _when
templates.filters["age"] = _age
templates.filters["num"] = lambda x: int(x) if float(x).is_integer() else x
templates.filters["pairs"] = lambda values: [(v, v) for v in values]
templates.filters["value_text"] = _value_text


# ------------------------------------------------------------------------ visits
class Refusal(Exception):
    """Ends a request with an HTML error page; also what a page shows of a refusal it
    answers itself (a form shown again with the refusal above it). `code`: the domain
    error's code, shown on the page (`data-code`), when the refusal is the domain's."""

    def __init__(self, status: int, title: str, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.title, self.message, self.code = status, title, message, code

    @classmethod
    def of(cls, error: DomainError | WriteTimeout, message: str | None = None) -> Refusal:
        """The console's answer to a domain error: status, title and message from the one
        table (`answer_for`, domain/errors.py), so every door answers it alike."""
        answer = answer_for(error)
        return cls(
            answer.console_status,
            answer.console_title,
            message or answer.message(error),
            answer.code,
        )


class SignInNeeded(Exception):
    def __init__(self, reason: str | None) -> None:
        super().__init__(reason or "sign in")
        self.reason = reason


@dataclass
class Visit:
    """One request to the console: who, their session, and the cookie to set if new."""

    request: Request
    sessions: Sessions
    session: Session
    actor: Actor | None
    renew: bool = False  # the session is new: set the cookie on the answer
    audit_entry: str | None = None
    form: dict[str, str] = field(default_factory=dict)

    def may(self, action: Action) -> bool:
        return self.actor is not None and may(self.actor.role, action)

    @property
    def path(self) -> str:
        return self.request.url.path


def sessions_of(request: Request) -> Sessions:
    ctx = ctx_of(request)
    sessions = getattr(request.app.state, "console_sessions", None)
    if sessions is None or sessions.auth is not ctx.auth:
        sessions = Sessions(secret_of(ctx.settings.console_secret), ctx.auth, session_store(ctx))
        request.app.state.console_sessions = sessions
    return sessions


def session_store(ctx: ApiContext) -> SessionStore:
    """The sessions' rows, in the engine's database (shared by every server process)."""

    @contextmanager
    def connect() -> Iterator[ReadDb]:
        with ctx.read() as models:
            yield models.db

    return SessionStore(connect, ctx.settings.console_idle_minutes * 60)


def _bytes(text: str) -> bytes:
    """For a constant-time comparison (compare_digest refuses non-ASCII str)."""
    return text.encode("utf-8", "surrogatepass")


def visit(request: Request, *, signed_in: bool = True) -> Visit:
    """The visit; `signed_in` pages send a visitor without a session to the sign-in page.
    A POST must carry the session's CSRF token."""
    sessions = sessions_of(request)
    session, why = sessions.decode(request.cookies.get(COOKIE))
    renew = session is None
    if session is None:
        if request.method == "POST" and signed_in:
            raise (
                SignInNeeded(why)
                if why
                else Refusal(
                    403,
                    "Refused",
                    "The form did not come with a console session (cookies must "
                    "be enabled). Reload the page and try again.",
                )
            )
        session = sessions.anonymous()
    actor = sessions.actor(session)
    if signed_in and actor is None:
        raise SignInNeeded(why)
    current = Visit(request, sessions, session, actor, renew)
    if actor is not None:
        request.state.actor = actor  # what `command_context` records for a command
    if request.method == "POST":
        current.form = form_of(request)
        if not hmac.compare_digest(_bytes(current.form.get("csrf", "")), _bytes(session.csrf)):
            raise Refusal(
                403,
                "Refused",
                "This form was not sent from your console session "
                "(its CSRF token is missing or wrong). Reload the page and try again.",
            )
    _record_auditor(current)
    return current


def form_of(request: Request) -> dict[str, str]:
    """The urlencoded form body (read by `read_body`); repeated names keep the last value
    except for names ending in `[]`, which collect `\\n`-joined values."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise Refusal(
            415,
            "Unsupported form",
            "The console takes plain HTML forms (application/x-www-form-urlencoded).",
        )
    try:
        pairs = parse_qsl(
            getattr(request, "_body", b"").decode("utf-8"),
            keep_blank_values=True,
            max_num_fields=MAX_FIELDS,
            strict_parsing=False,
            errors="strict",
        )
    except (UnicodeDecodeError, ValueError):
        raise Refusal(
            400, "Unreadable form", "The form could not be read (not UTF-8, or too many fields)."
        ) from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if "\x00" in name or "\x00" in value:
            raise Refusal(400, "Unreadable form", "Text must not contain NUL characters.")
        if len(name) > MAX_ID:  # the bounds of serviceorders.support.limits
            raise Refusal(
                400,
                "Form field too long",
                f"A field name is {len(name)} characters; the limit is {MAX_ID}.",
            )
        if len(value) > MAX_FORM_FIELD:
            raise Refusal(
                400,
                "Form field too long",
                f"The field {name!r} is {len(value)} characters; the limit is {MAX_FORM_FIELD}.",
            )
        if name.endswith("[]") and name in form:
            form[name] += "\n" + value
        else:
            form[name] = value
    return form


def query_of(request: Request) -> dict[str, str]:
    query = {k: v for k, v in request.query_params.items() if "\x00" not in k + v}
    return {k: v.strip() for k, v in query.items() if v.strip()}


def _record_auditor(current: Visit) -> None:
    """Auditors' reads are in the access log, whatever the door (docs/audit.md)."""
    actor = current.actor
    if actor is None or actor.role is not Role.AUDITOR:
        return
    url = current.request.url
    path = f"{url.path}?{url.query}" if url.query else url.path
    try:
        with ctx_of(current.request).read() as models:
            current.audit_entry = access_log.record(
                models.db, actor.id, actor.role.value, current.request.method, path
            )
    except Exception:
        log.exception("the access log could not be written")
        raise Refusal(
            503,
            "Service Unavailable",
            "Auditor requests are served only once "
            "recorded, and the access log cannot be written now.",
        ) from None


def _finish_auditor(current: Visit | None, status: int) -> None:
    if current is None or current.audit_entry is None:
        return
    try:
        with ctx_of(current.request).read() as models:
            access_log.finish(models.db, current.audit_entry, status)
    except Exception:
        log.exception("the access log entry %s got no status", current.audit_entry)


# ---------------------------------------------------------------------- answers
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _secure(request: Request) -> bool:
    base = ctx_of(request).base_url or ""
    return request.url.scheme == "https" or base.startswith("https://")


def finish(current: Visit | None, response: Response, request: Request | None = None) -> Response:
    request = request or (current.request if current else None)
    response.headers.update(SECURITY_HEADERS)
    if current is not None and current.renew and request is not None:
        set_session(response, current.sessions, current.session, request)
    _finish_auditor(current, response.status_code)
    return response


def set_session(response: Response, sessions: Sessions, session: Session, request: Request) -> None:
    response.set_cookie(
        COOKIE,
        sessions.encode(session),
        max_age=int(session.expires - datetime.now(UTC).timestamp()),
        path=PREFIX,
        httponly=True,
        samesite="lax",
        secure=_secure(request),
    )


def render(current: Visit, template: str, status: int = 200, **values: Any) -> Response:
    html = templates.get_template(template).render(
        v=current, actor=current.actor, csrf=current.session.csrf, Action=Action, **values
    )
    return finish(current, HTMLResponse(html, status_code=status))


def redirect(current: Visit, url: str) -> Response:
    return finish(current, RedirectResponse(url, status_code=303))


def error_page(
    request: Request,
    status: int,
    title: str,
    message: str,
    current: Visit | None = None,
    code: str | None = None,
) -> Response:
    html = templates.get_template("error.html").render(
        v=current,
        actor=current.actor if current else None,
        csrf=current.session.csrf if current else "",
        Action=Action,
        status=status,
        title=title,
        message=message,
        code=code,
    )
    return finish(current, HTMLResponse(html, status_code=status), request)


def sign_in_redirect(request: Request, reason: str | None) -> Response:
    target = request.url.path if request.method == "GET" else f"{PREFIX}/orders"
    if request.method == "GET" and request.url.query:
        target += f"?{request.url.query}"
    url = URL(f"{PREFIX}/signin").include_query_params(next=target)
    if reason:
        url = url.include_query_params(ended=reason)
    response = finish(None, RedirectResponse(str(url), status_code=303), request)
    response.delete_cookie(COOKIE, path=PREFIX)
    return response


def page(handler: Callable[..., Response]) -> Callable[..., Response]:
    """Wraps a route: a refusal, an API or domain error, or a bug becomes an HTML page
    (never a stack trace, never JSON)."""

    @functools.wraps(handler)
    def wrapped(request: Request, *args: Any, **kwargs: Any) -> Response:
        try:
            return handler(request, *args, **kwargs)
        except SignInNeeded as e:
            return sign_in_redirect(request, e.reason)
        except StoreUnavailable as e:
            log.error("console sessions cannot be checked: %s", e)
            return error_page(
                request,
                503,
                "Service Unavailable",
                "Console sessions cannot "
                "be checked now (the database is not answering). Try again in "
                "a moment.",
            )
        except Refusal as e:
            return _refusal_page(request, e)
        except ApiError as e:
            return error_page(
                request,
                e.status,
                e.reason,
                e.message or e.reason,
                getattr(request.state, "console_visit", None),
                e.code,
            )
        except DomainError as e:
            return _refusal_page(request, Refusal.of(e))
        except WriteTimeout as e:  # nothing was written; the same form may succeed again
            log.warning("a console write ran out of time: %s", e)
            answer = answer_for(e)
            return error_page(
                request,
                answer.console_status,
                answer.console_title,
                "The server could not complete the request; it has been logged.",
                getattr(request.state, "console_visit", None),
                answer.code,
            )
        except Exception:
            log.exception("unexpected error in the console")
            return error_page(
                request,
                500,
                "Something went wrong",
                "The server could not complete the request; it has been logged.",
            )

    return wrapped


def _refusal_page(request: Request, refusal: Refusal) -> Response:
    current = getattr(request.state, "console_visit", None)
    return error_page(
        request, refusal.status, refusal.title, refusal.message, current, refusal.code
    )


def begin(request: Request, *, signed_in: bool = True) -> Visit:
    current = visit(request, signed_in=signed_in)
    request.state.console_visit = current
    return current


def link(path: str, **query: Any) -> str:
    params = "&".join(
        f"{quote(str(k))}={quote(str(v))}" for k, v in query.items() if v not in (None, "")
    )
    return f"{PREFIX}{path}" + (f"?{params}" if params else "")


templates.globals["link"] = link


# ------------------------------------------------------------------ the one door
def load(request: Request, id: str | UUID, what: str = "order") -> ServiceOrder:
    """The order (or draft) a console URL names: a read. One that does not exist, or an id
    that is no UUID, is the table's answer to OrderNotFound ("no draft <id>")."""
    try:
        return ctx_of(request).app.get_order(id if isinstance(id, UUID) else UUID(id))
    except (ValueError, OrderNotFound):
        raise Refusal.of(OrderNotFound(str(id)), f"no {what} {id}") from None


def text(form: Mapping[str, str], name: str) -> str | None:
    value = form.get(name, "").strip()
    return value or None
