"""The ASGI app: the visitor API (v1) and Slack's HTTP endpoint, served by uvicorn."""

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from sse_starlette.sse import EventSourceResponse

from slackrouter.adapters.db import repository as repo
from slackrouter.api import signing
from slackrouter.api.limits import BodySizeLimit
from slackrouter.api.schemas import (
    AgentOut,
    ErrorOut,
    FeedMessage,
    FeedOut,
    MessageAccepted,
    MessageIn,
)
from slackrouter.bootstrap import Runtime
from slackrouter.services.conversations import ConversationNotFound, FeedPage
from slackrouter.services.visitor_messages import UnknownChatflow, VisitorMessageIn

STREAM_WAIT = 15.0

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut} for code in (400, 401, 404, 413, 422)
}


class ApiError(Exception):
    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error, self.message = status, error, message


def _error(status: int, error: str, message: str) -> JSONResponse:
    return JSONResponse({"error": error, "message": message}, status_code=status)


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

    @api.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.error, exc.message)

    @api.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'][1:]) or 'body'}: {err['msg']}"
            for err in exc.errors()
        )
        return _error(422, "invalid_request", problems or "the request is not valid")

    @api.post(
        "/v1/chatflows/{public_key}/messages",
        response_model=MessageAccepted,
        status_code=201,
        responses={200: {"model": MessageAccepted, "description": "Seen before"}, **ERRORS},
        summary="Post a visitor's message",
        description=(
            "From a browser, with the chatflow's public key alone (name and email are then "
            "unverified); from the site's backend, signed with `X-Slackrouter-Timestamp` and "
            "`X-Slackrouter-Signature: v1=HMAC-SHA256(secret, 'v1:{timestamp}:{body}')`."
        ),
    )
    async def post_message(
        public_key: str,
        message: MessageIn,
        request: Request,
        x_slackrouter_timestamp: Annotated[str | None, Header()] = None,
        x_slackrouter_signature: Annotated[str | None, Header()] = None,
    ) -> Any:
        signed = x_slackrouter_timestamp is not None or x_slackrouter_signature is not None
        if signed:
            async with runtime.sessions() as session:
                chatflow = await repo.chatflow_by_key(session, public_key)
            if chatflow is None:
                raise ApiError(404, "unknown_chatflow", "no chatflow has this public key")
            problem = signing.verify(
                chatflow.signing_secret,
                x_slackrouter_timestamp,
                x_slackrouter_signature,
                await request.body(),
            )
            if problem:
                raise ApiError(401, "bad_signature", problem)
        try:
            result = await runtime.visitor_messages.receive(
                public_key=public_key,
                message=VisitorMessageIn(**message.model_dump()),
                identity_verified=signed,
            )
        except UnknownChatflow:
            raise ApiError(404, "unknown_chatflow", "no chatflow has this public key") from None
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
        "/v1/conversations/{conversation_id}/messages",
        response_model=FeedOut,
        responses=ERRORS,
        summary="Read a conversation after a cursor (long-poll with `wait`)",
    )
    async def read_messages(
        conversation_id: str,
        after: Annotated[int, Query(ge=0)] = 0,
        wait: Annotated[float, Query(ge=0, le=runtime.settings.max_wait_seconds)] = 0,
        authorization: Annotated[str | None, Header()] = None,
    ) -> FeedOut:
        token = _bearer(authorization, None)
        try:
            page = await runtime.reader.read(conversation_id, token, after=after, wait=wait)
        except ConversationNotFound:
            raise ApiError(
                404, "unknown_conversation", "no conversation with this id and token"
            ) from None
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
    ) -> EventSourceResponse:
        secret = _bearer(authorization, token)
        try:
            await runtime.reader.authorize(conversation_id, secret)
        except ConversationNotFound:
            raise ApiError(
                404, "unknown_conversation", "no conversation with this id and token"
            ) from None
        cursor = int(last_event_id) if last_event_id and last_event_id.isdigit() else after

        async def events() -> AsyncIterator[dict[str, str]]:
            position = cursor
            while True:
                page = await runtime.reader.read(
                    conversation_id, secret, after=position, wait=STREAM_WAIT
                )
                for entry in _feed(page).messages:
                    yield {
                        "id": str(entry.cursor),
                        "event": entry.type,
                        "data": json.dumps(entry.model_dump(mode="json")),
                    }
                position = page.cursor

        return EventSourceResponse(events(), ping=15)

    @api.post("/slack/events", include_in_schema=False)
    async def slack_events(request: Request) -> Any:
        return await slack_handler.handle(request)

    api.add_middleware(BodySizeLimit, max_bytes=runtime.settings.max_body_bytes)
    return api
