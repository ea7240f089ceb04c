"""The chat's buttons on the sandbox Slack page, clicked as a rep would, in Chromium."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from slackrouter.services.chat_actions import CLOSED_NOTICE
from tests.browser.conftest import ALICE, Site
from tests.browser.test_widget import open_chat, say

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]


async def test_a_rep_claims_and_closes_a_chat_with_its_buttons(site: Site) -> None:
    page = await site.visit()
    chat = await open_chat(page)
    await say(chat, "Do you ship to Norway?")

    slack = await site.context.new_page()
    await slack.goto(site.sandbox_url)
    alice = slack.get_by_role("region", name="Alice Rep")
    bob = slack.get_by_role("region", name="Bob Rep")
    await expect(alice).to_contain_text("Do you ship to Norway?")
    await site.chat_posted(ALICE)  # the app knows the post, so it knows which chat is clicked
    buttons = alice.get_by_role("group", name="Buttons")
    await expect(buttons.get_by_role("button")).to_have_text(["Claim", "Transfer", "Close"])
    await expect(buttons.get_by_role("button", name="Transfer")).to_be_disabled()

    await buttons.get_by_role("button", name="Claim").click()
    await expect(alice).to_contain_text("Alice has this chat")
    await expect(bob).to_contain_text("Alice has this chat")
    await expect(buttons.get_by_role("button")).to_have_text(["Transfer", "Close"])

    await buttons.get_by_role("button", name="Close").click()
    confirm = alice.get_by_role("alertdialog", name="Close this chat?")
    await expect(confirm).to_contain_text("The visitor is told the chat has ended")
    await confirm.get_by_role("button", name="Close chat").click()
    await expect(chat.get_by_role("log")).to_contain_text(CLOSED_NOTICE)
    await expect(alice).to_contain_text("Closed by Alice")
    await expect(buttons).to_have_count(0)
    await expect(alice.get_by_role("alert")).to_have_count(0)  # no "Not sent" anywhere
