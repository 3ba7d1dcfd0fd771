"""ReadYourWritesMiddleware: a user's write keeps their next requests' reads fresh.

After a request that wrote, the response carries a signed cookie with the writer's WAL
position (and the time); the user's next requests, in any process, route their reads
as if they had written themselves, until a reader has replayed it or the cookie expires
(``cookie_max_age``). Add it to ``MIDDLEWARE`` (anywhere; it works for sync and async views).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async

from aurora_backend.routing import token
from aurora_backend.routing.carry import dump_token, load_token
from aurora_backend.routing.config import RoutingConfig

SALT = "aurora_backend.routing"


class ReadYourWritesMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response
        self.config = RoutingConfig.from_settings()
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: Any) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        before = self._before(request)
        response = self.get_response(request)
        self._after(request, response, before)
        return response

    async def __acall__(self, request: Any) -> Any:
        before = self._before(request)
        response = await self.get_response(request)
        if token.current() is not before:
            await sync_to_async(self._after)(request, response, before)
        return response

    def _before(self, request: Any) -> Any:
        token.clear()
        if self.config.enabled:
            load_token(
                request.get_signed_cookie(
                    self.config.cookie_name, default=None, salt=SALT, max_age=self.config.cookie_max_age
                )
            )
        return token.current()

    def _after(self, request: Any, response: Any, before: Any) -> None:
        if not self.config.enabled or token.current() is before:
            return  # nothing written here: a carried cookie keeps its own expiry
        text = dump_token()
        if text is not None:
            response.set_signed_cookie(
                self.config.cookie_name,
                text,
                salt=SALT,
                max_age=int(self.config.cookie_max_age),
                secure=request.is_secure(),
                httponly=True,
                samesite="Lax",
            )
