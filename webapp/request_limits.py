"""HTTP rate limits of the busy routes, on the app's one flask-limiter ``Limiter`` (Redis storage,
shared by every web process; webapp/ratelimits.py answers a breach with 429 + Retry-After).

Limits are per signed-in user (per address for anonymous callers, who are refused anyway) and read
from settings at each request, so every one is configurable:
- uploads (``UPLOAD_RATE_LIMIT``, 100/minute) count *requests*, sized to the batch pattern: the
  watcher and the upload page send several files per request, so 100 requests a minute carry far
  more photos than two workers process, and a client that exceeds it is told when to retry;
- my-photos (``MY_PHOTOS_RATE_LIMIT``, 60/minute): the page polls every few seconds.
Sign-in limits (per address and per email) are the security area's (``sign_in_limits``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from snapmatch.errors import SnapmatchError
from webapp.auth import current_user
from webapp.ratelimits import client_address, limiter
from webapp.services import settings

F = TypeVar("F", bound=Callable[..., object])


def user_or_address() -> str:
    """The rate-limit key: the signed-in user, else the caller's address."""
    try:
        user = current_user()
    except SnapmatchError:
        user = None  # a bad token: counted by address, refused by the view
    return f"user:{user.id}" if user is not None else f"address:{client_address()}"


def upload_rate_limit(view: F) -> F:
    return limiter.limit(
        lambda: settings().UPLOAD_RATE_LIMIT, key_func=user_or_address, scope="uploads", methods=["POST"]
    )(view)


def my_photos_rate_limit(view: F) -> F:
    return limiter.limit(lambda: settings().MY_PHOTOS_RATE_LIMIT, key_func=user_or_address, scope="my-photos")(view)
