"""The widget as a visitor uses it, and the sandbox Slack as a rep uses it, in Chromium."""

from __future__ import annotations

import pytest
from playwright.async_api import Locator, Page, Route, expect

from slackrouter.services.contacts import ContactIn
from tests.browser.conftest import ALICE, BOB, Site
from tests.scenario.conftest import eventually

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

AWAY = "We're away right now. Leave your email and we'll get back to you."  # the default
EMAIL_PROMPT = "Leave your email address and we'll write back."


async def open_chat(page: Page, launcher: str = "Chat with us") -> Locator:
    await page.get_by_role("button", name=launcher).click()
    chat = page.get_by_role("dialog")
    await expect(chat).to_be_visible()
    return chat


async def say(chat: Locator, text: str) -> None:
    message = chat.get_by_role("textbox", name="Message")
    await message.fill(text)
    await message.press("Enter")
    await expect(chat.get_by_role("log")).to_contain_text(text)


async def test_a_visitor_and_a_rep_chat_through_slack(site: Site) -> None:
    page = await site.visit()
    chat = await open_chat(page)
    await expect(chat.get_by_role("heading")).to_have_text("Chat with us")
    await expect(chat).to_contain_text("Alice or Bob will reply")
    await expect(chat.get_by_role("log")).to_contain_text("Hi! How can we help?")
    await say(chat, "Do you ship to Norway?")

    slack = await site.context.new_page()
    await slack.goto(site.sandbox_url)
    alice = slack.get_by_role("region", name="Alice Rep")
    await expect(alice).to_contain_text("Do you ship to Norway?")
    await expect(slack.get_by_role("region", name="Bob Rep")).to_contain_text("Norway")
    thread_ts = await site.chat_posted(ALICE)
    reply = alice.get_by_role("textbox", name="Reply in thread")
    await reply.fill("Yes, in 3 days!")
    await reply.press("Enter")
    await expect(alice.get_by_role("listitem").last).to_contain_text("Alice Rep")
    await expect(alice.get_by_role("listitem").last).to_contain_text("Yes, in 3 days!")

    answer = chat.get_by_role("log").get_by_role("listitem").last
    await expect(answer).to_have_text("AliceYes, in 3 days!")
    await expect(chat).to_contain_text("Alice will reply")

    reply_ts = site.slack.thread(f"D{ALICE}", thread_ts)[-1]["ts"]
    await site.slack.user_edits(ALICE, f"D{ALICE}", reply_ts, "Yes, in 2 days!")
    await expect(answer).to_have_text("AliceYes, in 2 days!edited")
    await site.slack.user_deletes(f"D{ALICE}", reply_ts)
    await expect(answer).to_have_text("AliceMessage deleted")


async def test_when_nobody_is_available_the_visitor_leaves_an_email(site: Site) -> None:
    slack = await site.context.new_page()
    await slack.goto(site.sandbox_url)
    for rep in ("Alice Rep", "Bob Rep"):
        await slack.get_by_role("switch", name=f"{rep} active").uncheck()

    def away(user_id: str) -> bool:
        users = site.slack.snapshot()["users"]
        return next(u for u in users if u["id"] == user_id)["presence"] == "away"

    await eventually(lambda: away(ALICE) and away(BOB))
    await site.runtime.presence.refresh(pace=False)  # the app's poll, now rather than later

    page = await site.visit()
    chat = await open_chat(page)
    await expect(chat).to_contain_text("Away right now")
    await expect(chat.get_by_role("log")).to_contain_text(AWAY)
    email = chat.get_by_role("textbox", name=EMAIL_PROMPT)
    await expect(email).to_be_hidden()

    await say(chat, "Can I pick a bike up in Bergen?")
    await expect(email).to_be_visible()
    await email.fill("nora@example")
    await email.press("Enter")
    await expect(chat.get_by_role("alert")).to_have_text("Please check the address.")
    await email.fill("nora@example.com")
    await email.press("Enter")
    await expect(chat.get_by_role("log")).to_contain_text(
        "Thanks! We'll write to nora@example.com."
    )
    await expect(email).to_be_hidden()
    conversation = await site.conversation()
    assert (conversation.routing_outcome, conversation.visitor_email) == (
        "away",
        "nora@example.com",
    )

    await page.reload()
    chat = page.get_by_role("dialog")
    await expect(chat.get_by_role("log")).to_contain_text("Can I pick a bike up in Bergen?")
    await expect(chat.get_by_role("textbox", name=EMAIL_PROMPT)).to_be_hidden()


async def test_the_conversation_survives_a_reload(site: Site) -> None:
    page = await site.visit()
    chat = await open_chat(page)
    await say(chat, "<b>Hello</b> from the pricing page")
    thread_ts = await site.chat_posted(ALICE)
    await site.slack.user_posts(ALICE, f"D{ALICE}", "Hi! What can I do for you?", thread_ts)
    await expect(chat.get_by_role("log")).to_contain_text("What can I do for you?")

    await page.reload()
    chat = page.get_by_role("dialog")
    log = chat.get_by_role("log")
    await expect(log).to_contain_text("<b>Hello</b> from the pricing page")
    await expect(log).to_contain_text("Hi! What can I do for you?")
    await expect(log.locator("b")).to_have_count(0)
    await say(chat, "Which sizes do you have?")

    def followed_up() -> bool:
        thread = site.slack.thread(f"D{ALICE}", thread_ts)
        return any("Which sizes" in str(message) for message in thread[1:])

    await eventually(followed_up)

    await chat.get_by_role("button", name="Close chat").click()
    await page.close()
    await site.slack.user_posts(ALICE, f"D{ALICE}", "From 52 to 62 cm.", thread_ts)
    page = await site.visit()
    launcher = page.get_by_role("button", name="Chat with us (1 new)")
    await expect(launcher).to_be_visible()
    await launcher.click()
    await expect(page.get_by_role("log")).to_contain_text("From 52 to 62 cm.")
    await expect(page.get_by_role("button", name="Chat with us", exact=True)).to_be_visible()


async def test_a_known_visitor_is_greeted_by_their_owner(site: Site) -> None:
    await site.set_chatflow(rotate_to_owner=True)
    await site.runtime.contacts.upsert(
        team_id=site.slack.team_id,
        contact=ContactIn(email="nora@example.com", owner=BOB, visitor_ids=("nora-cookie",)),
    )
    cookie = {"name": "slackrouter_visitor", "value": "nora-cookie", "url": site.website_url}
    await site.context.add_cookies([cookie])  # type: ignore[list-item]

    page = await site.visit()
    chat = await open_chat(page)
    await expect(chat).to_contain_text("Bob will reply")
    avatar = chat.locator("header img")
    await expect(avatar).to_have_count(1)
    bob = site.slack.users[BOB]["profile"]
    await expect(avatar).to_have_attribute("src", bob["image_192"])
    assert await avatar.evaluate("image => image.complete && image.naturalWidth > 0")


async def test_the_chat_works_from_the_keyboard(site: Site) -> None:
    page = await site.visit()
    launcher = page.get_by_role("button", name="Chat with us")
    for _ in range(10):
        await page.keyboard.press("Tab")
        if await launcher.evaluate("button => button.getRootNode().activeElement === button"):
            break
    await expect(launcher).to_be_focused()
    await page.keyboard.press("Enter")
    message = page.get_by_role("textbox", name="Message")
    await expect(message).to_be_focused()
    await page.keyboard.type("Typed, not clicked")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("log")).to_contain_text("Typed, not clicked")
    await expect(message).to_have_value("")
    await expect(message).to_be_focused()
    await page.keyboard.press("Escape")
    await expect(page.get_by_role("dialog")).to_be_hidden()
    await expect(launcher).to_be_focused()
    await expect(launcher).to_have_attribute("aria-expanded", "false")


async def test_without_event_source_replies_arrive_by_long_polling(site: Site) -> None:
    await site.context.add_init_script("delete window.EventSource")
    page = await site.visit()
    chat = await open_chat(page)
    await say(chat, "Is anyone there?")
    thread_ts = await site.chat_posted(BOB)
    await site.slack.user_posts(BOB, f"D{BOB}", "Bob here, hello!", thread_ts)
    await expect(chat.get_by_role("log")).to_contain_text("Bob here, hello!")


async def test_the_widget_wears_the_chatflow_look_and_not_the_page_styles(site: Site) -> None:
    await site.set_chatflow(
        widget={
            "color": "#0b6e4f",
            "position": "left",
            "title": "Talk to sales",
            "launcher_label": "Ask us",
            "placeholder": "Your question",
        }
    )
    page = await site.visit()
    await page.add_style_tag(
        content="body { font-size: 40px; color: red } button { background: red !important }"
    )
    launcher = page.get_by_role("button", name="Ask us")
    box = await launcher.bounding_box()
    assert box is not None and box["x"] < 100
    assert await launcher.evaluate("b => getComputedStyle(b).backgroundColor") == "rgb(11, 110, 79)"
    assert await launcher.evaluate("b => getComputedStyle(b).fontSize") == "15px"
    chat = await open_chat(page, "Ask us")
    await expect(chat.get_by_role("heading")).to_have_text("Talk to sales")
    await expect(chat.get_by_role("textbox", name="Message")).to_have_attribute(
        "placeholder", "Your question"
    )


@pytest.mark.parametrize("viewport", [{"width": 375, "height": 700}])
async def test_on_a_phone_the_chat_fills_the_screen(site: Site) -> None:
    page = await site.visit()
    chat = await open_chat(page)
    assert await chat.bounding_box() == {"x": 0, "y": 0, "width": 375, "height": 700}
    await chat.get_by_role("button", name="Close chat").click()
    await expect(page.get_by_role("button", name="Chat with us")).to_be_visible()


async def test_when_the_stream_fails_the_chat_catches_up_and_resumes(site: Site) -> None:
    streams: list[str] = []

    async def first_stream_fails(route: Route) -> None:
        streams.append(route.request.url)
        if len(streams) == 1:
            await route.fulfill(status=503, body="down for a moment")
        else:
            await route.continue_()

    await site.context.route("**/stream?*", first_stream_fails)
    page = await site.visit()
    chat = await open_chat(page)
    await say(chat, "Anyone?")
    thread_ts = await site.chat_posted(ALICE)
    await site.slack.user_posts(ALICE, f"D{ALICE}", "Yes, Alice here.", thread_ts)
    await expect(chat.get_by_role("log")).to_contain_text("Yes, Alice here.")
    await site.slack.user_posts(ALICE, f"D{ALICE}", "How can I help?", thread_ts)
    await expect(chat.get_by_role("log")).to_contain_text("How can I help?")
    assert "after=0" in streams[0]
    assert "after=0" not in streams[1]  # the second stream resumed after what was read
    await expect(chat.get_by_role("log").get_by_text("Yes, Alice here.")).to_have_count(1)
