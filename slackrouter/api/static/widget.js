/*! slackrouter chat widget. Embed it with one tag:
 *  <script src="https://YOUR-SLACKROUTER/widget.js" data-chatflow="PUBLIC_KEY" async></script>
 * It talks to the visitor API next to this file; its look comes from the chatflow (greeting).
 */
(async () => {
  "use strict";
  const script = document.currentScript || document.querySelector("script[data-chatflow]");
  const key = script && script.dataset.chatflow;
  if (!key) return console.warn('slackrouter: add data-chatflow="PUBLIC_KEY" to the widget\'s <script>');
  const api = new URL("v1/", script.src).href;
  const STORE = `slackrouter:${key}`;
  const COOKIE = "slackrouter_visitor";
  const EVENTS = ["message", "message_changed", "message_deleted"];
  const LONG_POLL_WAIT = 20;
  const YEAR = 365 * 24 * 3600;

  // --- plumbing ------------------------------------------------------------------------------

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  const newId = () =>
    crypto.randomUUID ? crypto.randomUUID() : hex(crypto.getRandomValues(new Uint8Array(16)));

  async function call(path, { method = "GET", body, token } = {}) {
    const headers = {};
    if (body) headers["Content-Type"] = "application/json";
    if (token) headers.Authorization = `Bearer ${token}`;
    const response = await fetch(api + path, { method, headers, body: body && JSON.stringify(body) });
    if (!response.ok)
      throw Object.assign(new Error(`slackrouter: ${response.status}`), { status: response.status });
    return response.status === 204 ? null : response.json();
  }

  /** The tracking token: a first-party cookie, renewed for a year on every visit. */
  function visitorId() {
    const found = document.cookie.match(new RegExp(`(?:^|;\\s*)${COOKIE}=([^;]+)`));
    const id = found ? decodeURIComponent(found[1]) : newId();
    const secure = location.protocol === "https:" ? "; Secure" : "";
    document.cookie = `${COOKIE}=${encodeURIComponent(id)}; Max-Age=${YEAR}; Path=/; SameSite=Lax${secure}`;
    return id;
  }

  /** The conversation (id, token, cursor, away, email) and whether the panel is open, kept
   *  across page loads. Where storage is blocked it lasts for this page only. */
  let chat = {};
  try {
    chat = JSON.parse(localStorage.getItem(STORE)) || {};
  } catch {}
  const save = () => {
    try {
      localStorage.setItem(STORE, JSON.stringify(chat));
    } catch {}
  };

  function el(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) {
      if (name === "text") node.textContent = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value);
    }
    node.append(...children);
    return node;
  }

  // --- the greeting decides what to show -------------------------------------------------------

  const visitor = visitorId();
  let greeting;
  try {
    greeting = await call(
      `chatflows/${encodeURIComponent(key)}/greeting?visitor_id=${encodeURIComponent(visitor)}`,
    );
  } catch (error) {
    return console.warn("slackrouter: the chat is not available", error);
  }
  const look = greeting.widget;
  if (document.readyState === "loading")
    await new Promise((ready) => addEventListener("DOMContentLoaded", ready));

  // --- the widget, in a shadow root so the page's styles and ours never meet -------------------

  const faces = el("div", { class: "faces" });
  const status = el("p");
  const log = el("ol", {
    class: "log",
    role: "log",
    "aria-live": "polite",
    "aria-label": "Messages",
    tabindex: "0",
  });
  const emailInput = el("input", {
    id: "email",
    type: "email",
    required: "",
    autocomplete: "email",
    maxlength: "320",
  });
  const emailError = el("span", { class: "error", role: "alert" });
  const emailForm = el(
    "form",
    { class: "email", hidden: "", onsubmit: leaveEmail },
    el("label", { for: "email", text: look.email_prompt }),
    emailInput,
    el("button", { class: "send", "aria-label": "Send email address", text: "Send" }),
    emailError,
  );
  const input = el("textarea", { id: "text", rows: "1", maxlength: "4000", placeholder: look.placeholder });
  const compose = el(
    "form",
    { onsubmit: submit },
    el("label", { for: "text", class: "sr", text: "Message" }),
    input,
    el("button", { class: "send", text: "Send" }),
  );
  const panel = el(
    "section",
    { id: "panel", class: "panel", role: "dialog", "aria-labelledby": "title", hidden: "" },
    el(
      "header",
      {},
      faces,
      el("div", {}, el("h2", { id: "title", text: look.title }), status),
      el("button", {
        type: "button",
        class: "close",
        "aria-label": "Close chat",
        text: "×",
        onclick: () => setOpen(false),
      }),
    ),
    log,
    emailForm,
    compose,
  );
  const badge = el("span", { class: "badge", "aria-hidden": "true", hidden: "" });
  const launcher = el(
    "button",
    {
      type: "button",
      class: "launcher",
      "aria-expanded": "false",
      "aria-controls": "panel",
      onclick: () => setOpen(panel.hidden),
    },
    el("span", { text: look.launcher_label }),
    badge,
  );
  launcher.prepend(chatIcon());
  const root = el("div", { class: `root ${look.position}` }, panel, launcher);
  root.style.setProperty("--color", look.color);
  root.style.setProperty("--text", look.text_color);
  panel.addEventListener("keydown", (event) => event.key === "Escape" && setOpen(false));
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      compose.requestSubmit();
    }
  });
  const host = el("div", { "data-slackrouter": "" });
  host.attachShadow({ mode: "open" }).append(el("style", { text: css() }), root);
  document.body.append(host);

  let unread = 0;
  const seen = chat.cursor || 0; // what earlier page loads received: anything later is new
  let cursor = 0; // what this page has shown
  const pending = new Set(); // sent from this page, not yet seen in the feed
  const known = new Map(); // message_id -> its <li>
  let queue = Promise.resolve(); // sending, one message at a time
  let generation = 0; // bumped whenever the conversation or the connection changes
  let source = null;
  let backoff = 1000;
  const intro = greeting.status === "away" ? greeting.away_message : greeting.welcome_message;
  let awayShown = greeting.status === "away" ? intro : null;
  add(bubble({ author: "rep", text: intro }));
  showAgents(greeting.agents);
  showEmailForm();
  if (chat.open) setOpen(true, { focus: false });
  if (chat.id) listen();

  function setOpen(open, { focus = true } = {}) {
    chat.open = open;
    save();
    panel.hidden = !open;
    root.classList.toggle("open", open);
    launcher.setAttribute("aria-expanded", String(open));
    if (open) {
      unread = 0;
      showUnread();
      log.scrollTop = log.scrollHeight;
    }
    if (focus) (open ? input : launcher).focus();
  }

  function showUnread() {
    badge.hidden = !unread;
    badge.textContent = unread;
    if (unread) launcher.setAttribute("aria-label", `${look.launcher_label} (${unread} new)`);
    else launcher.removeAttribute("aria-label");
  }

  function showAgents(agents) {
    if (greeting.status === "away" && !agents.length) {
      status.textContent = "Away right now";
      return;
    }
    faces.replaceChildren(...agents.slice(0, 3).map(face));
    const names = agents.map((agent) => agent.name);
    status.textContent =
      names.length && names.length <= 3
        ? `${new Intl.ListFormat("en", { type: "disjunction" }).format(names)} will reply`
        : "We'll reply soon";
  }

  function face(agent) {
    const initial = el("span", { "aria-hidden": "true", text: agent.name.slice(0, 1).toUpperCase() });
    if (!agent.avatar_url) return initial;
    const image = el("img", { src: agent.avatar_url, alt: "" });
    image.addEventListener("error", () => image.replaceWith(initial), { once: true });
    return image;
  }

  function showEmailForm() {
    emailForm.hidden = !chat.away || Boolean(chat.email);
  }

  // --- messages: shown as text, never as HTML -------------------------------------------------

  function bubble(message) {
    const item = el("li", { class: message.author });
    fill(item, message);
    return item;
  }

  function fill(item, message) {
    item.replaceChildren();
    if (message.author === "visitor") item.append(el("span", { class: "sr", text: "You: " }));
    if (message.author_name) item.append(el("span", { class: "who", text: message.author_name }));
    if (message.text === null) item.append(el("span", { class: "gone", text: "Message deleted" }));
    else item.append(message.text);
    if (message.edited) item.append(el("span", { class: "note", text: "edited" }));
    if (message.sent_at) item.title = new Date(message.sent_at).toLocaleString();
  }

  function add(item) {
    log.append(item);
    log.scrollTop = log.scrollHeight;
  }

  // --- sending: one at a time, in order, each retried under its own client_message_id ---------

  function submit(event) {
    event.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    const item = { text, id: newId(), li: bubble({ author: "visitor", text }) };
    item.li.classList.add("pending");
    pending.add(item);
    add(item.li);
    queue = queue.then(() => deliver(item));
  }

  async function deliver(item) {
    item.li.querySelector(".retry")?.remove();
    const body = {
      visitor_id: visitor,
      client_message_id: item.id,
      text: item.text,
      page_url: location.href.slice(0, 2000),
    };
    for (let attempt = 0; ; attempt++) {
      try {
        return accepted(
          item,
          await call(`chatflows/${encodeURIComponent(key)}/messages`, { method: "POST", body }),
        );
      } catch (error) {
        const refused = error.status >= 400 && error.status < 500 && error.status !== 429;
        if (refused || attempt === 4) return notSent(item);
        await sleep(1000 * 2 ** attempt);
      }
    }
  }

  function notSent(item) {
    const retry = () => (queue = queue.then(() => deliver(item)));
    item.li.append(
      el("button", { type: "button", class: "retry", text: "Not sent. Try again", onclick: retry }),
    );
  }

  function accepted(item, answer) {
    item.li.classList.remove("pending");
    pending.delete(item);
    known.set(answer.message_id, item.li);
    if (answer.conversation_id !== chat.id) {
      chat = { open: chat.open, id: answer.conversation_id, token: answer.conversation_token, cursor: 0 };
      cursor = 0;
      save();
      listen();
    }
    if (answer.status === "away") away(answer.away_message);
    else if (answer.agents.length) showAgents(answer.agents);
  }

  function away(message) {
    if (message && message !== awayShown) add(bubble({ author: "system", text: message }));
    awayShown = message || awayShown;
    chat.away = true;
    save();
    showEmailForm();
  }

  async function leaveEmail(event) {
    event.preventDefault();
    const email = emailInput.value.trim();
    try {
      await call(`conversations/${chat.id}/email`, { method: "POST", body: { email }, token: chat.token });
    } catch (error) {
      emailError.textContent = error.status === 422 ? "Please check the address." : "Not sent. Try again.";
      return;
    }
    chat.email = email;
    save();
    showEmailForm();
    add(bubble({ author: "system", text: `Thanks! We'll write to ${email}.` }));
  }

  // --- receiving: Server-Sent Events, resumed from the last cursor; long-poll without them ----

  async function later() {
    await sleep(backoff);
    backoff = Math.min(backoff * 2, 30000);
  }

  function read(wait) {
    return call(`conversations/${chat.id}/messages?after=${cursor}&wait=${wait}`, { token: chat.token });
  }

  function listen() {
    source?.close();
    const current = ++generation;
    if (!window.EventSource) return longPoll(current);
    const stream = new EventSource(
      `${api}conversations/${chat.id}/stream?token=${encodeURIComponent(chat.token)}&after=${cursor}`,
    );
    source = stream;
    for (const type of EVENTS) stream.addEventListener(type, (event) => apply(JSON.parse(event.data)));
    stream.onopen = () => (backoff = 1000);
    // The browser reconnects by itself, sending Last-Event-ID; it gives up only when the
    // server refuses the stream, and then a plain read tells a gone conversation from an outage.
    stream.onerror = () => stream.readyState === EventSource.CLOSED && resync(current);
  }

  async function resync(current) {
    await later();
    if (current !== generation) return;
    try {
      const page = await read(0);
      if (current !== generation) return;
      page.messages.forEach(apply);
      listen();
    } catch (error) {
      if (error.status === 404) forget();
      else resync(current);
    }
  }

  async function longPoll(current) {
    while (current === generation) {
      try {
        const page = await read(LONG_POLL_WAIT);
        if (current === generation) page.messages.forEach(apply);
        backoff = 1000;
      } catch (error) {
        if (error.status === 404) return forget();
        await later();
      }
    }
  }

  /** The conversation is gone (say, the server's data was reset): the next message starts anew. */
  function forget() {
    source?.close();
    generation++;
    chat = { open: chat.open };
    save();
    showEmailForm();
  }

  function apply(message) {
    if (message.cursor <= cursor) return;
    cursor = message.cursor;
    chat.cursor = Math.max(chat.cursor || 0, cursor);
    save();
    let item = known.get(message.message_id);
    if (message.type !== "message") return item && fill(item, message);
    if (item) return;
    const mine = message.author === "visitor" && [...pending].find((p) => p.text === message.text);
    if (mine) {
      pending.delete(mine);
      mine.li.classList.remove("pending");
      return known.set(message.message_id, mine.li);
    }
    item = bubble(message);
    known.set(message.message_id, item);
    add(item);
    if (message.author === "visitor") return;
    if (message.author === "system") away();
    else if (message.author_name)
      showAgents([{ name: message.author_name, avatar_url: message.author_avatar_url }]);
    if (panel.hidden && message.cursor > seen) {
      unread++;
      showUnread();
    }
  }

  function chatIcon() {
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    const path = document.createElementNS(svg.namespaceURI, "path");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    path.setAttribute("d", "M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z");
    svg.append(path);
    return svg;
  }

  function css() {
    return `
      :host {
        all: initial;
      }
      * {
        box-sizing: border-box;
      }
      .root {
        position: fixed;
        bottom: 20px;
        right: 20px;
        z-index: 2147483000;
        display: flex;
        flex-direction: column;
        align-items: flex-end;
        gap: 12px;
        font:
          15px/1.4 system-ui,
          -apple-system,
          "Segoe UI",
          Roboto,
          sans-serif;
        color: #1f2328;
      }
      .root.left {
        right: auto;
        left: 20px;
        align-items: flex-start;
      }
      [hidden] {
        display: none !important;
      }
      button,
      input,
      textarea {
        font: inherit;
      }
      button {
        cursor: pointer;
      }
      :focus-visible {
        outline: 3px solid #0969da;
        outline-offset: 2px;
      }
      .launcher {
        display: flex;
        align-items: center;
        gap: 8px;
        border: 0;
        border-radius: 999px;
        padding: 12px 18px;
        background: var(--color);
        color: var(--text);
        font-weight: 600;
        box-shadow: 0 4px 14px rgb(0 0 0 / 25%);
      }
      .launcher svg {
        width: 22px;
        height: 22px;
        fill: currentColor;
      }
      .badge {
        min-width: 20px;
        padding: 0 6px;
        border-radius: 999px;
        background: #cf222e;
        color: #fff;
        font-size: 12px;
      }
      .panel {
        display: flex;
        flex-direction: column;
        width: 370px;
        height: min(580px, calc(100vh - 110px));
        overflow: hidden;
        background: #fff;
        border-radius: 14px;
        box-shadow: 0 8px 30px rgb(0 0 0 / 25%);
      }
      header {
        display: flex;
        align-items: center;
        gap: 12px;
        padding: 14px 16px;
        background: var(--color);
        color: var(--text);
      }
      h2 {
        margin: 0;
        font-size: 17px;
      }
      header p {
        margin: 0;
        font-size: 13px;
      }
      .faces {
        display: flex;
      }
      .faces > * {
        display: grid;
        place-items: center;
        width: 38px;
        height: 38px;
        margin-left: -10px;
        border: 2px solid var(--color);
        border-radius: 50%;
        background: #fff;
        color: #1f2328;
        font-weight: 700;
        object-fit: cover;
      }
      .faces > :first-child {
        margin-left: 0;
      }
      .close {
        margin-left: auto;
        padding: 2px 10px;
        border: 0;
        border-radius: 6px;
        background: none;
        color: inherit;
        font-size: 26px;
        line-height: 1;
      }
      .log {
        flex: 1;
        display: flex;
        flex-direction: column;
        gap: 8px;
        margin: 0;
        padding: 16px;
        overflow-y: auto;
        list-style: none;
        background: #f6f8fa;
      }
      .log li {
        max-width: 85%;
        align-self: flex-start;
        padding: 8px 12px;
        border: 1px solid #d0d7de;
        border-radius: 14px;
        background: #fff;
        white-space: pre-wrap;
        overflow-wrap: anywhere;
      }
      .log .visitor {
        align-self: flex-end;
        border-color: transparent;
        background: var(--color);
        color: var(--text);
      }
      .log .pending {
        opacity: 0.7;
      }
      .log .system {
        align-self: center;
        border: 0;
        background: none;
        color: #57606a;
        font-size: 13px;
        text-align: center;
      }
      .who {
        display: block;
        font-size: 12px;
        font-weight: 600;
        color: #57606a;
      }
      .note,
      .gone {
        font-size: 12px;
        font-style: italic;
      }
      .note::before {
        content: " · ";
      }
      .retry {
        display: block;
        margin-top: 4px;
        padding: 0;
        border: 0;
        background: none;
        color: inherit;
        font-size: 12px;
        text-decoration: underline;
      }
      form {
        display: flex;
        flex-wrap: wrap;
        gap: 8px;
        padding: 10px 12px;
        border-top: 1px solid #d0d7de;
        background: #fff;
      }
      .email label {
        width: 100%;
        font-size: 13px;
      }
      .error {
        width: 100%;
        color: #cf222e;
        font-size: 13px;
      }
      .error:empty {
        display: none;
      }
      input,
      textarea {
        flex: 1;
        min-width: 0;
        padding: 8px 10px;
        border: 1px solid #8c959f;
        border-radius: 8px;
        background: #fff;
        color: #1f2328;
      }
      textarea {
        max-height: 120px;
        resize: none;
        field-sizing: content;
      }
      .send {
        padding: 0 16px;
        border: 0;
        border-radius: 8px;
        background: var(--color);
        color: var(--text);
        font-weight: 600;
      }
      .sr {
        position: absolute;
        width: 1px;
        height: 1px;
        overflow: hidden;
        clip-path: inset(50%);
        white-space: nowrap;
      }
      @media (max-width: 480px) {
        .root.open {
          inset: 0;
        }
        .root.open .panel {
          width: 100%;
          height: 100%;
          border-radius: 0;
        }
        .root.open .launcher {
          display: none;
        }
      }
    `;
  }
})();
