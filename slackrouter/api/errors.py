"""The visitor API's errors: a 4xx with `{"error": code, "message": what to fix}`."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from slackrouter.adapters.db import repository as repo
from slackrouter.adapters.db.models import Chatflow
from slackrouter.api import signing


class ApiError(Exception):
    def __init__(
        self, status: int, error: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.error, self.message, self.headers = status, error, message, headers


def error_response(
    status: int, error: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": error, "message": message}, status_code=status, headers=headers)


def unknown_chatflow() -> ApiError:
    return ApiError(404, "unknown_chatflow", "no chatflow has this public key")


def unknown_conversation() -> ApiError:
    return ApiError(404, "unknown_conversation", "no conversation with this id and token")


async def signed_chatflow(
    sessions: async_sessionmaker[AsyncSession],
    public_key: str,
    request: Request,
    timestamp: str | None,
    signature: str | None,
) -> Chatflow:
    """The chatflow a server-to-server call names, once its signature checks out."""
    async with sessions() as session:
        chatflow = await repo.chatflow_by_key(session, public_key)
    if chatflow is None:
        raise unknown_chatflow()
    problem = signing.verify(chatflow.signing_secret, timestamp, signature, await request.body())
    if problem:
        raise ApiError(401, "bad_signature", problem)
    return chatflow
