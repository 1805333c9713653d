"""Accounts: the frontend's `/users/…` endpoints plus the current user."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, BackgroundTasks, Depends, HTTPException, Query, Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy.orm import Session, sessionmaker
from videoflix_core.db import TokenPurpose, User

from videoflix_api import mail
from videoflix_api.config import Settings
from videoflix_api.deps import (
    ACCESS_COOKIE,
    REFRESH_COOKIE,
    BaseUrlDep,
    CurrentUser,
    MailerDep,
    MetricsDep,
    SessionDep,
    SettingsDep,
    client_address,
    rate_limit,
    throttle,
    unthrottle,
    utcnow,
)
from videoflix_api.errors import FieldErrors, error_responses
from videoflix_api.mail import Mailer
from videoflix_api.schemas import (
    Detail,
    EmailExists,
    ForgotPasswordRequest,
    LoginRequest,
    RegisterCreate,
    RegisterPublic,
    ResetPasswordRequest,
    UserPublic,
)
from videoflix_api.security import password_problems
from videoflix_api.services import accounts
from videoflix_api.services.accounts import Confirmation, IssuedTokens, Registration

log = logging.getLogger(__name__)
router = APIRouter(prefix="/users", tags=["users"])


def _send(mailer: Mailer, message: object) -> None:
    # Runs after the response: an SMTP outage must not turn into a 500 or reveal anything.
    try:
        mailer.send(message)  # type: ignore[arg-type]
    except Exception:
        log.exception("Could not send mail")


def _complete_registration(
    sessions: sessionmaker[Session],
    settings: Settings,
    mailer: Mailer,
    base: str,
    email: str,
    password: str,
) -> None:
    # Runs after the response with its own transaction, like `_send`: failures are only logged.
    try:
        with sessions() as session:
            now = utcnow()
            registered = accounts.register(session, email, password)
            user, outcome = registered.user, registered.outcome
            if outcome is Registration.EXISTS:
                message = mail.already_registered_message(
                    settings.mail_from,
                    user.email,
                    f"{settings.frontend_url}{settings.frontend_reset_path}",
                )
            else:
                token = accounts.issue_single_use_token(
                    session,
                    user,
                    TokenPurpose.CONFIRM,
                    timedelta(seconds=settings.confirm_token_seconds),
                    now,
                    password_hash=registered.password_hash,
                )
                # `base` is the configured public URL (required outside dev mode), not the Host.
                link = f"{base}/users/confirm/?{urlencode({'uid': user.id, 'token': token})}"
                message = mail.confirm_message(
                    settings.mail_from, user.email, link, settings.confirm_token_seconds // 3600
                )
            session.commit()
    except Exception:
        log.exception("Could not complete a registration")
        return
    _send(mailer, message)


def _mail_reset(
    sessions: sessionmaker[Session], settings: Settings, mailer: Mailer, email: str
) -> None:
    # Runs after the response with its own transaction, like `_send`: failures are only logged.
    try:
        with sessions() as session:
            user = accounts.get_user_by_email(session, email)
            if user is None:
                return
            token = accounts.issue_single_use_token(
                session,
                user,
                TokenPurpose.RESET,
                timedelta(seconds=settings.reset_token_seconds),
                utcnow(),
            )
            session.commit()
            link = _link(settings, settings.frontend_reset_path, uid=user.id, token=token)
            hours = max(1, settings.reset_token_seconds // 3600)
            message = mail.reset_message(settings.mail_from, user.email, link, hours)
    except Exception:
        log.exception("Could not issue a reset token")
        return
    _send(mailer, message)


def _link(settings: Settings, path: str, **params: object) -> str:
    return f"{settings.frontend_url}{path}?{urlencode(params)}"


def set_auth_cookies(response: Response, settings: Settings, tokens: IssuedTokens) -> None:
    common = {
        "httponly": True,
        "secure": settings.cookie_secure,
        "samesite": settings.cookie_samesite,
        "domain": settings.cookie_domain,
        "path": "/",
    }
    response.set_cookie(ACCESS_COOKIE, tokens.access, max_age=tokens.access_max_age, **common)  # type: ignore[arg-type]
    response.set_cookie(REFRESH_COOKIE, tokens.refresh, max_age=tokens.refresh_max_age, **common)  # type: ignore[arg-type]


def clear_auth_cookies(response: Response, settings: Settings) -> None:
    for name in (ACCESS_COOKIE, REFRESH_COOKIE):
        response.delete_cookie(
            name,
            path="/",
            domain=settings.cookie_domain,
            secure=settings.cookie_secure,
            httponly=True,
            samesite=settings.cookie_samesite,
        )


def user_public(session: SessionDep, user: User) -> UserPublic:
    return UserPublic(
        id=user.id,
        email=user.email,
        is_staff=user.is_staff,
        favorite_videos=accounts.favorite_ids(session, user.id),
    )


@router.get(
    "/email-exists/",
    response_model=EmailExists,
    responses=error_responses(429),
    dependencies=[Depends(rate_limit("email-exists", "rate_limit_email_exists"))],
)
def email_exists(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    email: Annotated[str, Query(max_length=254)],
) -> EmailExists:
    """Whether an account uses this e-mail (rate limited per client and per e-mail: it is an
    enumeration oracle the frontend's sign-up form needs)."""
    throttle(
        request,
        "email-exists-email",
        accounts.normalize_email(email),
        settings.rate_limit_email_exists,
    )
    return EmailExists(exists=accounts.email_exists(session, email))


@router.post(
    "/register/",
    status_code=201,
    response_model=RegisterPublic,
    responses=error_responses(429),
    dependencies=[Depends(rate_limit("register", "rate_limit_register"))],
)
def register(
    body: RegisterCreate,
    request: Request,
    settings: SettingsDep,
    mailer: MailerDep,
    background: BackgroundTasks,
    base: BaseUrlDep,
) -> RegisterPublic:
    """Create an inactive account and mail a confirmation link.

    The answer is the same whether or not the address already has an account; its owner gets a
    mail saying so instead. The account is written just after the answer is sent.
    """
    errors = accounts.registration_problems(body.email, body.password, body.confirm_password)
    if errors:
        raise FieldErrors(errors)
    # Everything else (hash, lookup, writes, mail) runs after the response, for every address:
    # an answer that waited for an account and a token to be written only for a new address
    # would tell existing ones by its time.
    request.app.state.deferred.after(
        background,
        _complete_registration,
        request.app.state.sessionmaker,
        settings,
        mailer,
        base,
        body.email,
        body.password,
    )
    return RegisterPublic(email=accounts.normalize_email(body.email))


@router.get("/confirm/", status_code=302, response_class=RedirectResponse)
def confirm(
    session: SessionDep,
    settings: SettingsDep,
    uid: Annotated[int, Query(ge=1, lt=2**31)],
    token: Annotated[str, Query(max_length=200)],
) -> RedirectResponse:
    """Activate the account and redirect to the frontend's login page.

    Safe to open twice (mail scanners pre-open links): a link that already activated its
    account redirects as a success again.
    """
    outcome = accounts.confirm(session, uid, token, utcnow())
    confirmed = "1" if outcome in (Confirmation.ACTIVATED, Confirmation.ALREADY) else "0"
    return RedirectResponse(
        _link(settings, settings.frontend_login_path, confirmed=confirmed), status_code=302
    )


@router.post("/login/", response_model=UserPublic, responses=error_responses(401, 403, 429))
def login(
    body: LoginRequest,
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    metrics: MetricsDep,
) -> UserPublic:
    """Sign in: sets the `vf_access` and `vf_refresh` HttpOnly cookies (longer with `remember`).

    Failed attempts are limited per client address and per e-mail from any address (known or
    not, so a lock reveals nothing); a locked e-mail answers 429 even to the right password.
    """
    throttle(request, "login", client_address(request), settings.rate_limit_login)
    account = accounts.normalize_email(body.email)
    # Counted before the password is checked (parallel guesses cannot all slip in), given back
    # on success: only failures lock an account.
    throttle(
        request,
        "login-email",
        account,
        settings.rate_limit_login_account,
        settings.rate_limit_login_account_window_seconds,
    )
    now = utcnow()
    user = accounts.authenticate(session, body.email, body.password, now)
    if user is None:
        metrics.auth_failures.labels("bad_credentials").inc()
        raise HTTPException(401, "Invalid email or password.")
    unthrottle(request, "login-email", account)
    if not user.is_active:
        metrics.auth_failures.labels("not_confirmed").inc()
        raise HTTPException(403, "Please confirm your email address first.")
    tokens = accounts.start_session(session, settings, user, body.remember, now)
    set_auth_cookies(response, settings, tokens)
    return user_public(session, user)


@router.post("/refresh/", response_model=Detail, responses={401: {"model": Detail}})
def refresh(
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    metrics: MetricsDep,
) -> Detail:
    """Rotate the refresh cookie and issue a new access cookie.

    The same cookie presented again within the grace window (two requests refreshing at once)
    answers 200 with the same successor; later, a reused token ends the session (401).
    """
    token = request.cookies.get(REFRESH_COOKIE)
    if not token:
        metrics.auth_failures.labels("missing_refresh").inc()
        raise HTTPException(401, "Refresh token not provided.")
    try:
        tokens = accounts.rotate(session, settings, token, utcnow())
    except accounts.RefreshRefused as exc:
        metrics.auth_failures.labels(f"refresh_{exc.reason}").inc()
        log.info("Refused refresh", extra={"reason": exc.reason})
        raise HTTPException(401, "Token is invalid or expired") from exc
    set_auth_cookies(response, settings, tokens)
    return Detail(detail="Token refreshed.")


@router.post("/logout/", response_model=Detail)
def logout(
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
) -> Detail:
    """End the session named by the refresh cookie and clear both cookies.

    Works from the refresh cookie alone (the access cookie has usually expired by then) and
    always answers 200, even without any cookie, so the client is signed out whatever it holds.
    """
    token = request.cookies.get(REFRESH_COOKIE)
    if token:
        accounts.end_session(session, settings, token, utcnow())
    clear_auth_cookies(response, settings)
    return Detail(detail="Logged out.")


@router.get("/me/", response_model=UserPublic, responses=error_responses(401))
def me(user: CurrentUser, session: SessionDep) -> UserPublic:
    """The signed-in user."""
    return user_public(session, user)


@router.post(
    "/forgot-password/",
    response_model=Detail,
    responses=error_responses(429),
    dependencies=[Depends(rate_limit("reset", "rate_limit_reset"))],
)
def forgot_password(
    body: ForgotPasswordRequest,
    request: Request,
    settings: SettingsDep,
    mailer: MailerDep,
    background: BackgroundTasks,
) -> Detail:
    """Mail a reset link when the account exists; the answer is the same either way.

    Even the lookup runs after the response, for every address: an answer that waited for a
    token to be written only when the account exists would tell by its time.
    """
    throttle(
        request, "reset-email", accounts.normalize_email(body.email), settings.rate_limit_reset
    )
    request.app.state.deferred.after(
        background,
        _mail_reset,
        request.app.state.sessionmaker,
        settings,
        mailer,
        body.email,
    )
    return Detail(detail="If an account exists for this email, a reset link has been sent.")


@router.post(
    "/reset-password/",
    response_model=Detail,
    responses={400: {"model": Detail}, **error_responses(429)},
    dependencies=[Depends(rate_limit("reset-confirm", "rate_limit_reset"))],
)
def reset_password(body: ResetPasswordRequest, session: SessionDep) -> Detail:
    """Set a new password with the mailed token (single use, expiring); ends every session."""
    if problems := password_problems(body.new_password):
        raise FieldErrors({"new_password": problems})
    if not 0 < body.uid < 2**31:
        raise HTTPException(400, "Invalid or expired reset link.")
    user = accounts.reset_password(session, body.uid, body.token, body.new_password, utcnow())
    if user is None:
        raise HTTPException(400, "Invalid or expired reset link.")
    return Detail(detail="Your password has been reset.")
