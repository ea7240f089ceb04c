"""The ASGI app: the visitor API (v1) and Slack's HTTP endpoint, served by uvicorn."""

import asyncio
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeVar

from fastapi import FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from slack_sdk.signature import SignatureVerifier
from starlette.exceptions import HTTPException as StarletteHTTPException

from slackrouter.adapters.slack.connection import INSTALL_PATH, REDIRECT_PATH
from slackrouter.adapters.slack.payloads import slack_request_problem
from slackrouter.api.contacts import contacts_router
from slackrouter.api.cors import VisitorApiCors
from slackrouter.api.errors import (
    ApiError,
    error_response,
    signed_chatflow,
    unknown_chatflow,
    unknown_conversation,
)
from slackrouter.api.limits import BodySizeLimit
from slackrouter.api.operations import operations_router
from slackrouter.api.ratelimit import SlidingWindowLimiter
from slackrouter.api.schemas import (
    AgentOut,
    EmailIn,
    ErrorOut,
    FeedMessage,
    FeedOut,
    GreetingOut,
    MessageAccepted,
    MessageIn,
    WidgetOut,
)
from slackrouter.api.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER
from slackrouter.api.streams import FeedStream, StreamHandoff
from slackrouter.api.widget import widget_router
from slackrouter.bootstrap import Runtime
from slackrouter.clock import utcnow
from slackrouter.services.conversations import ConversationNotFound, FeedPage
from slackrouter.services.greeting import greet
from slackrouter.services.visitor_messages import UnknownChatflow, VisitorMessageIn
from slackrouter.worker_process import WorkerUnavailable

# Slack's interaction payloads carry the whole view or message clicked in (up to 100 blocks).
SLACK_MAX_BODY_BYTES = 1_048_576
T = TypeVar("T")

_SIGNATURE_HEADERS = [
    {
        "name": name.lower(),
        "in": "header",
        "required": False,
        "schema": {"anyOf": [{"type": "string"}, {"type": "null"}], "title": name},
    }
    for name in (TIMESTAMP_HEADER, SIGNATURE_HEADER)
]

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut} for code in (400, 401, 404, 413, 422, 429)
}


def _feed(page: FeedPage) -> FeedOut:
    return FeedOut(
        messages=[
            FeedMessage.model_validate(entry, from_attributes=True) for entry in page.entries
        ],
        cursor=page.cursor,
        status=page.status,  # type: ignore[arg-type]
    )


def _bearer(authorization: str | None, token: str | None) -> str:
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    if token:
        return token
    raise ApiError(401, "missing_token", "send the conversation token as 'Authorization: Bearer …'")


async def _unless_client_leaves(request: Request, work: Awaitable[T]) -> T | None:
    """`work`'s result, or None as soon as the client hangs up: a long-poll from a closed tab
    must not hold the server (nor its graceful shutdown) for the rest of its wait."""

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    job, gone = asyncio.ensure_future(work), asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({job, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (job, gone):
            if not task.done():
                task.cancel()
        await asyncio.gather(job, gone, return_exceptions=True)
    return None if job.cancelled() else job.result()


def create_api(runtime: Runtime) -> FastAPI:
    """The whole HTTP surface; its lifespan starts and stops the runtime's background work."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    api = FastAPI(
        title="slackrouter visitor API",
        version="1",
        description="Send a website visitor's chat messages to Slack and read the reps' replies.",
        lifespan=lifespan,
    )
    slack_handler = AsyncSlackRequestHandler(runtime.bolt)
    # Server-to-server calls come from the site's few backend addresses: only browsers are
    # limited per IP; every visitor is limited per visitor id.
    per_ip = SlidingWindowLimiter(runtime.settings.rate_limit_per_ip)
    per_visitor = SlidingWindowLimiter(runtime.settings.rate_limit_per_visitor)

    @api.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.error, exc.message, exc.headers)

    @api.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {400: "malformed_request", 404: "not_found", 405: "method_not_allowed"}
        return error_response(
            exc.status_code,
            codes.get(exc.status_code, "http_error"),
            str(exc.detail),
            dict(exc.headers) if exc.headers else None,
        )

    @api.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'][1:]) or 'body'}: {err['msg']}"
            for err in exc.errors()
        )
        return error_response(422, "invalid_request", problems or "the request is not valid")

    @api.post(
        "/v1/chatflows/{public_key}/messages",
        response_model=MessageAccepted,
        status_code=201,
        responses={
            200: {"model": MessageAccepted, "description": "Seen before"},
            **ERRORS,
            503: {"model": ErrorOut, "description": "Not answered in time: send it again"},
        },
        summary="Post a visitor's message",
        description=(
            "From a browser, with the chatflow's public key alone (name and email are then "
            "unverified); from the site's backend, signed with `X-Slackrouter-Timestamp` and "
            "`X-Slackrouter-Signature: v1=HMAC-SHA256(secret, 'v1:{timestamp}:{body}')`."
        ),
        openapi_extra={"parameters": _SIGNATURE_HEADERS},
    )
    async def post_message(public_key: str, message: MessageIn, request: Request) -> Any:
        # The signature headers are read here rather than declared as parameters: FastAPI
        # works out each declared parameter anew for every request, which cost the busiest
        # endpoint about a tenth of its HTTP work (the OpenAPI document describes them still).
        x_slackrouter_timestamp = request.headers.get(TIMESTAMP_HEADER)
        x_slackrouter_signature = request.headers.get(SIGNATURE_HEADER)
        signed = x_slackrouter_timestamp is not None or x_slackrouter_signature is not None
        client_ip = request.client.host if request.client else "unknown"
        wait = per_ip.hit(client_ip) if not signed else 0.0
        wait = wait or per_visitor.hit(f"{public_key}:{message.visitor_id}")
        if wait:
            raise ApiError(
                429,
                "rate_limited",
                f"too many messages; try again in {wait:.0f} s",
                headers={"Retry-After": str(max(1, round(wait)))},
            )
        if signed:
            await signed_chatflow(
                runtime.sessions,
                public_key,
                request,
                x_slackrouter_timestamp,
                x_slackrouter_signature,
            )
        try:
            result = await runtime.visitor_messages.receive(
                public_key=public_key,
                message=VisitorMessageIn(**message.model_dump()),
                identity_verified=signed,
            )
        except UnknownChatflow:
            raise unknown_chatflow() from None
        except WorkerUnavailable:
            raise ApiError(
                503,
                "unavailable",
                "the message was not answered in time; send it again (it is stored once)",
                headers={"Retry-After": "1"},
            ) from None
        body = MessageAccepted(
            conversation_id=result.conversation_id,
            conversation_token=result.conversation_token,
            message_id=result.message_id,
            status=result.status,  # type: ignore[arg-type]
            agents=[AgentOut(name=a.name, avatar_url=a.avatar_url) for a in result.agents],
            away_message=result.away_message,
            identity_verified=result.identity_verified,
            duplicate=result.duplicate,
        )
        return JSONResponse(
            body.model_dump(mode="json"), status_code=200 if result.duplicate else 201
        )

    @api.get(
        "/v1/chatflows/{public_key}/greeting",
        response_model=GreetingOut,
        responses=ERRORS,
        summary="Who would answer now, before the visitor writes",
        description="With `visitor_id`, a known contact's owner is shown where the chatflow "
        "routes owned visitors to their owner.",
    )
    async def get_greeting(
        public_key: str,
        visitor_id: Annotated[str | None, Query(max_length=200)] = None,
    ) -> GreetingOut:
        try:
            greeting = await greet(
                runtime.sessions,
                runtime.router,
                public_key=public_key,
                visitor_id=visitor_id,
                clock=utcnow,
            )
        except UnknownChatflow:
            raise unknown_chatflow() from None
        return GreetingOut(
            status=greeting.status,  # type: ignore[arg-type]
            agents=[AgentOut(name=a.name, avatar_url=a.avatar_url) for a in greeting.agents],
            welcome_message=greeting.welcome_message,
            away_message=greeting.away_message,
            widget=WidgetOut.model_validate(greeting.widget, from_attributes=True),
        )

    @api.post(
        "/v1/conversations/{conversation_id}/email",
        status_code=204,
        responses=ERRORS,
        summary="Leave an email address, so a rep can answer by email",
    )
    async def leave_email(
        conversation_id: str,
        body: EmailIn,
        authorization: Annotated[str | None, Header()] = None,
    ) -> Response:
        token = _bearer(authorization, None)
        try:
            await runtime.reader.leave_email(conversation_id, token, body.email)
        except ConversationNotFound:
            raise unknown_conversation() from None
        return Response(status_code=204)

    @api.get(
        "/v1/conversations/{conversation_id}/messages",
        response_model=FeedOut,
        responses=ERRORS,
        summary="Read a conversation after a cursor (long-poll with `wait`)",
    )
    async def read_messages(
        conversation_id: str,
        request: Request,
        after: Annotated[int, Query(ge=0)] = 0,
        wait: Annotated[float, Query(ge=0, le=runtime.settings.max_wait_seconds)] = 0,
        authorization: Annotated[str | None, Header()] = None,
    ) -> FeedOut | Response:
        token = _bearer(authorization, None)
        try:
            page = await _unless_client_leaves(
                request, runtime.reader.read(conversation_id, token, after=after, wait=wait)
            )
        except ConversationNotFound:
            raise unknown_conversation() from None
        if page is None:
            return Response(status_code=204)  # nobody is listening any more
        return _feed(page)

    @api.get(
        "/v1/conversations/{conversation_id}/stream",
        responses={200: {"content": {"text/event-stream": {}}}, **ERRORS},
        summary="Stream a conversation as Server-Sent Events",
        description=(
            "Each event's `id` is its cursor and its `data` a message as in /messages. "
            "A reconnecting EventSource sends `Last-Event-ID` and resumes after it. Browsers pass "
            "the token as `?token=`, since EventSource cannot set headers."
        ),
    )
    async def stream(
        conversation_id: str,
        after: Annotated[int, Query(ge=0)] = 0,
        token: Annotated[str | None, Query()] = None,
        authorization: Annotated[str | None, Header()] = None,
        last_event_id: Annotated[str | None, Header()] = None,
    ) -> FeedStream:
        secret = _bearer(authorization, token)
        cursor = int(last_event_id) if last_event_id and last_event_id.isdigit() else after
        return FeedStream(runtime.reader, runtime.notifier, conversation_id, secret, cursor)

    verifier = SignatureVerifier(runtime.settings.slack_signing_secret or "")

    @api.post("/slack/events", include_in_schema=False)
    async def slack_events(request: Request) -> Any:
        body = await request.body()
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            return error_response(400, "malformed_request", "the body is not UTF-8")
        if not verifier.is_valid(
            body,
            request.headers.get("X-Slack-Request-Timestamp", ""),
            request.headers.get("X-Slack-Signature", ""),
        ):
            return error_response(401, "bad_signature", "not a genuine request from Slack")
        problem = slack_request_problem(body, request.headers.get("Content-Type", ""))
        if problem:
            return error_response(400, "malformed_request", problem)
        return await slack_handler.handle(request)

    if runtime.settings.oauth:
        # OAuth distribution: Bolt serves the install page and finishes installs.
        @api.get(INSTALL_PATH, include_in_schema=False)
        @api.get(REDIRECT_PATH, include_in_schema=False)
        async def slack_oauth(request: Request) -> Any:
            return await slack_handler.handle(request)

    api.include_router(operations_router(runtime))
    api.include_router(contacts_router(runtime))
    api.include_router(widget_router())
    api.add_middleware(
        BodySizeLimit,
        max_bytes=runtime.settings.max_body_bytes,
        path_limits={"/slack/": SLACK_MAX_BODY_BYTES},
    )
    api.add_middleware(VisitorApiCors)
    api.add_middleware(StreamHandoff)  # outermost: see api/streams.py
    return api
