"""`PUT /v1/chatflows/{public_key}/contacts`: the site's backend says who a visitor is and which
rep owns them. Server-to-server only, since a contact's owner decides where their chats go: a
browser must never be able to claim one."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from slack_sdk.errors import SlackApiError

from slackrouter.adapters.slack.gateway import slack_error
from slackrouter.api.errors import ApiError, signed_chatflow
from slackrouter.api.schemas import ErrorOut, Text, Token
from slackrouter.bootstrap import Runtime
from slackrouter.services.contacts import (
    EMAIL,
    MAX_EMAIL,
    MAX_NAME,
    MAX_VISITOR_ID,
    MAX_VISITOR_IDS,
    ContactIn,
    OwnerNotFound,
    owner_reference,
)

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut} for code in (400, 401, 404, 413, 422, 503)
}


def _owner(value: str) -> str:
    if owner_reference(value) is None:
        raise ValueError("must be a Slack user id (U… or W…) or an email address")
    return value


Owner = Annotated[Text, AfterValidator(_owner)]
VisitorId = Annotated[Token, Field(min_length=1, max_length=MAX_VISITOR_ID)]


class ContactBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: Text | None = Field(default=None, max_length=MAX_EMAIL, pattern=EMAIL.pattern)
    name: Text | None = Field(default=None, max_length=MAX_NAME)
    owner: Owner | None = Field(
        default=None,
        max_length=MAX_EMAIL,
        description="The rep who owns the contact: a Slack user id or their Slack email address",
    )
    visitor_ids: list[VisitorId] = Field(
        default_factory=list,
        max_length=MAX_VISITOR_IDS,
        description="The visitor's tracking cookie tokens (the visitor API's `visitor_id`)",
    )

    @model_validator(mode="after")
    def _identified(self) -> ContactBody:
        if not self.email and not self.visitor_ids:
            raise ValueError("an email or a visitor id is needed")
        return self


class ContactResponse(BaseModel):
    id: int
    email: str | None = Field(description="Lower-cased")
    name: str | None
    owner_user_id: str | None
    visitor_ids: list[str] = Field(description="Every tracking token linked to the contact")


def contacts_router(runtime: Runtime) -> APIRouter:
    """The contacts endpoint; `create_api` includes it, and its `ApiError` handler renders the
    errors."""
    router = APIRouter()

    @router.put(
        "/v1/chatflows/{public_key}/contacts",
        response_model=ContactResponse,
        responses=ERRORS,
        summary="Create or update a contact and its owner (server-to-server only)",
        description=(
            "Matches the contact by email, else by one of the visitor ids, else creates it; "
            "every visitor id given is linked to it. Fields left out keep their stored values. "
            "Signed with `X-Slackrouter-Timestamp` and "
            "`X-Slackrouter-Signature: v1=HMAC-SHA256(secret, 'v1:{timestamp}:{body}')`."
        ),
    )
    async def put_contact(
        public_key: str,
        contact: ContactBody,
        request: Request,
        x_slackrouter_timestamp: Annotated[str | None, Header()] = None,
        x_slackrouter_signature: Annotated[str | None, Header()] = None,
    ) -> ContactResponse:
        chatflow = await signed_chatflow(
            runtime.sessions, public_key, request, x_slackrouter_timestamp, x_slackrouter_signature
        )
        try:
            stored = await runtime.contacts.upsert(
                team_id=chatflow.team_id,
                contact=ContactIn(
                    email=contact.email,
                    name=contact.name,
                    owner=contact.owner,
                    visitor_ids=tuple(contact.visitor_ids),
                ),
            )
        except OwnerNotFound as exc:
            raise ApiError(422, "owner_not_found", str(exc)) from None
        except SlackApiError as exc:
            raise ApiError(
                503,
                "slack_unavailable",
                f"Slack could not check the owner ({slack_error(exc)}); try again later",
                headers={"Retry-After": "30"},
            ) from None
        return ContactResponse(**asdict(stored))

    return router
