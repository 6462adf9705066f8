"""Sign-in with an API key (the key becomes a session, never a cookie), sign-out, home."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from serviceorders.api.common import ctx_of
from serviceorders.api.console.web import PREFIX, begin, finish, page, redirect, render, set_session
from serviceorders.domain.lifecycle import Action

router = APIRouter()

ENDED = {
    "expired": "Your session expired. Please sign in again.",
    "revoked": "Your session ended: the API key it was opened with is no longer valid.",
    "tampered": "Your session cookie was not valid. Please sign in again.",
    "signed_out": "That session was signed out. Please sign in again.",
    "idle": "Your session ended after {idle} without activity. Please sign in again.",
    "ended": "Your session is no longer open on the server. Please sign in again.",
}


def _idle(minutes: float) -> str:
    if minutes >= 1 and float(minutes).is_integer():
        return f"{int(minutes)} minute" + ("s" if minutes != 1 else "")
    return f"{round(minutes * 60)} seconds"


def _next(target: str | None) -> str:
    """Only a console path: a sign-in never sends anyone elsewhere."""
    if (
        target
        and target.startswith(PREFIX + "/")
        and not target.startswith("//")
        and "\\" not in target
    ):
        return target
    return PREFIX + "/"


@router.get(PREFIX + "/signin", include_in_schema=False)
@page
def sign_in_page(request: Request) -> Response:
    current = begin(request, signed_in=False)
    query = request.query_params
    notice = ENDED.get(query.get("ended", ""))
    if notice:
        notice = notice.format(idle=_idle(ctx_of(request).settings.console_idle_minutes))
    if query.get("signed_out"):
        notice = "You are signed out."
    return render(
        current,
        "signin.html",
        next=_next(query.get("next")),
        notice=notice,
        open_mode=current.sessions.auth.open,
    )


@router.post(PREFIX + "/signin", include_in_schema=False)
@page
def sign_in(request: Request) -> Response:
    current = begin(request, signed_in=False)
    target = _next(current.form.get("next"))
    if current.sessions.auth.open:
        return redirect(current, target)
    key = current.sessions.find_key(current.form.get("key", "").strip())
    if key is None:
        return render(
            current,
            "signin.html",
            status=401,
            next=target,
            open_mode=False,
            error="That API key is not valid. Check it and try again.",
        )
    current.sessions.end(current.session)  # signed in already: that session ends
    session = current.sessions.for_key(key)  # a new session: a new id, a new CSRF token
    response = finish(None, RedirectResponse(target, status_code=303), request)
    set_session(response, current.sessions, session, request)
    return response


@router.post(PREFIX + "/signout", include_in_schema=False)
@page
def sign_out(request: Request) -> Response:
    current = begin(request, signed_in=False)
    current.sessions.end(current.session)  # refused from now on, by every server process
    response = finish(
        None, RedirectResponse(f"{PREFIX}/signin?signed_out=1", status_code=303), request
    )
    set_session(response, current.sessions, current.sessions.anonymous(), request)
    return response


@router.get(PREFIX, include_in_schema=False)
@router.get(PREFIX + "/", include_in_schema=False)
@page
def home(request: Request) -> Response:
    current = begin(request)
    return redirect(
        current, f"{PREFIX}/queue" if current.may(Action.APPROVE) else f"{PREFIX}/orders"
    )


@router.get("/", include_in_schema=False)
def root() -> Response:
    return RedirectResponse(PREFIX + "/", status_code=307)
