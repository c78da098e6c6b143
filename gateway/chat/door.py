"""A front door on the turn pipeline, and ``serve``: the whole request, the same for every door.

A door (gateway/api/chat_completions.py is the first) does three things and nothing more: parse its
request into the neutral ``Turn``, choose its ``Sink`` (the wire shape of the answer), and shape its
responses and errors. ``serve`` runs the stages in order::

    accept (authenticate, validate, log, fetch files -> Job)  ->  Reply.open (reservation, waiting,
    failover; the prompt shaped for the account reserved)  ->  run into the sink  ->  finish (once)

See README.md beside this file for how to add a door.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from typing import Generic, TypeVar

from django.http import HttpRequest, HttpResponseBase

from gateway.chat.accept import accept, new_request_id
from gateway.chat.reply import Reply
from gateway.chat.run import StreamBody, collect
from gateway.chat.settle import ending_client_closed, ending_for_error, internal_error
from gateway.chat.sink import Sink
from gateway.chat.turn import Job, Turn
from gateway.openai.errors import GatewayError

log = logging.getLogger(__name__)
MODEL_HEADER = "x-kimiproxy-model"  # the model that really answers (a Claude name is answered by Kimi)
Parsed = TypeVar("Parsed")
DoorSink = TypeVar("DoorSink", bound=Sink)


class FrontDoor(abc.ABC, Generic[Parsed, DoorSink]):
    """One API shape. ``Parsed`` is the door's own parsed request, ``DoorSink`` its sink type.
    ``name`` tells the doors apart where that matters (native multi-turn states belong to one door)."""

    name: str = ""

    @abc.abstractmethod
    def parse(self, body: object) -> tuple[Turn, Parsed]:
        """The decoded JSON body -> the neutral turn and whatever the sink needs; ``GatewayError`` if bad."""

    @abc.abstractmethod
    def sink(self, job: Job, parsed: Parsed) -> DoorSink:
        """The sink that gives this request's answer its wire shape (streaming or collected)."""

    @abc.abstractmethod
    def error_response(self, error: GatewayError, *, request_id: str) -> HttpResponseBase:
        """A failure before the answer began, in this API's error shape."""

    @abc.abstractmethod
    def stream_response(self, body: StreamBody, *, job: Job, reply: Reply) -> HttpResponseBase:
        """The streaming response around ``body`` (its headers go out before the first byte)."""

    @abc.abstractmethod
    def collected_response(self, sink: DoorSink, *, job: Job, reply: Reply) -> HttpResponseBase:
        """The whole answer, once the sink has collected it."""

    def authorization(self, request: HttpRequest) -> str:
        """The caller's credential as an ``Authorization`` header value (a door may read other headers)."""
        return request.headers.get("Authorization", "")


async def serve(request: HttpRequest, door: FrontDoor[Parsed, DoorSink]) -> HttpResponseBase:
    """Serve one request through the pipeline. Every accepted request gets its final write."""
    request_id = new_request_id()
    try:
        job, parsed = await accept(
            request,
            parse=door.parse,
            request_id=request_id,
            authorization=door.authorization(request),
            door=door.name or type(door).__name__,
        )
    except GatewayError as error:  # refused or failed before an account was involved; already logged
        return door.error_response(error, request_id=request_id)
    response = await _answer(door, job, parsed)
    response[MODEL_HEADER] = job.turn.model.served
    return response


async def _answer(door: FrontDoor[Parsed, DoorSink], job: Job, parsed: Parsed) -> HttpResponseBase:
    request_id = job.request_id
    reply = Reply(job)
    try:
        sink = door.sink(job, parsed)
        await reply.open()
        if sink.streams:
            return door.stream_response(StreamBody(reply, sink), job=job, reply=reply)
        await collect(reply, sink)
    except GatewayError as error:
        reply.finish(ending_for_error(error))
        return door.error_response(error, request_id=request_id)
    except asyncio.CancelledError:
        reply.finish(ending_client_closed())  # the client went away
        raise
    except Exception:
        # A bug of ours: the request still gets its final log row, and the client an error in its shape.
        log.exception("request %s failed", request_id)
        internal = internal_error()
        reply.finish(ending_for_error(internal))
        return door.error_response(internal, request_id=request_id)
    return door.collected_response(sink, job=job, reply=reply)
