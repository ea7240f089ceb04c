"""The visitor API's request and response bodies (they make its OpenAPI document)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

MAX_TEXT = 4000


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _stripped(value: str) -> str:
    value = _no_nul(value).strip()
    if not value:
        raise ValueError("must not be blank")
    return value


Text = Annotated[str, AfterValidator(_no_nul)]
Token = Annotated[str, AfterValidator(_stripped)]


class MessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    visitor_id: Token = Field(
        min_length=1, max_length=200, description="The site's tracking cookie token for the visitor"
    )
    client_message_id: Token = Field(
        min_length=1,
        max_length=100,
        description="Chosen by the client; sending the same id again returns the same answer",
    )
    text: Token = Field(min_length=1, max_length=MAX_TEXT)
    name: Text | None = Field(default=None, max_length=200)
    email: Text | None = Field(default=None, max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    page_url: Text | None = Field(default=None, max_length=2000)


class AgentOut(BaseModel):
    name: str
    avatar_url: str | None


class MessageAccepted(BaseModel):
    conversation_id: str
    conversation_token: str = Field(description="Secret; needed to read the conversation")
    message_id: int
    status: Literal["routed", "away"]
    agents: list[AgentOut] = Field(description="Who will answer (empty when away)")
    away_message: str | None
    identity_verified: bool = Field(
        description="False for browser calls: name and email are the visitor's own claim"
    )
    duplicate: bool = Field(description="True when this client_message_id was seen before")


class WidgetOut(BaseModel):
    """The chatflow's widget look, defaults filled in."""

    color: str = Field(description="Launcher, header and the visitor's bubbles (#rrggbb or #rgb)")
    text_color: str = Field(description="Text on `color`")
    position: Literal["right", "left"] = Field(description="Corner of the page")
    title: str
    launcher_label: str
    placeholder: str
    email_prompt: str = Field(description="Asks for an email address when nobody is available")


class GreetingOut(BaseModel):
    status: Literal["routed", "away"] = Field(description="Would a chat started now be answered?")
    agents: list[AgentOut] = Field(description="Who would answer: the owner, or the reps")
    welcome_message: str
    away_message: str | None
    widget: WidgetOut


class EmailIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: Text = Field(max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class FeedMessage(BaseModel):
    cursor: int
    type: Literal["message", "message_changed", "message_deleted"]
    message_id: int
    author: Literal["visitor", "rep", "system"]
    author_name: str | None
    author_avatar_url: str | None
    text: str | None = Field(description="None once the message was withdrawn")
    sent_at: datetime
    edited: bool


class FeedOut(BaseModel):
    messages: list[FeedMessage]
    cursor: int = Field(description="Pass as `after` to read what comes next")
    status: Literal["open", "closed"]


class ErrorOut(BaseModel):
    error: str
    message: str
