"""WhiteNoise for an async Django: static files served as WhiteNoise does, every other request passed
straight to the async handler.

WhiteNoise's middleware is sync-only, so under ASGI Django would hop every API request into a thread
and back just to ask it "is this a static file?" (a dict lookup). Measured on the benchmark, that hop was
a visible share of each request's CPU.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase
from whitenoise.middleware import WhiteNoiseMiddleware


class AsyncWhiteNoiseMiddleware(WhiteNoiseMiddleware):  # type: ignore[misc]  # whitenoise ships no types
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        super().__init__(get_response)
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.is_async:
            return self._acall(request)
        response: HttpResponseBase = super().__call__(request)
        return response

    def _static_file(self, request: HttpRequest) -> Any:
        return self.find_file(request.path_info) if self.autorefresh else self.files.get(request.path_info)

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        static_file = self._static_file(request)
        if static_file is not None:
            response: HttpResponseBase = self.serve(static_file, request)
            return response
        response = await self.get_response(request)
        return response
