"""The log format: logfmt lines with the workspace and conversation of the work at hand, and
anything shaped like a Slack token blanked out."""

from __future__ import annotations

import logging

from slackrouter.observability import (
    LogfmtFormatter,
    _install_record_factory,
    bind_log_context,
    log_context,
    redact,
)


def _line(message: str, *args: object, context: dict[str, str] | None = None) -> str:
    record = logging.LogRecord("slackrouter.x", logging.INFO, __file__, 1, message, args, None)
    record.slackrouter_context = context or {}
    return LogfmtFormatter().format(record)


def test_logfmt_with_the_context_ids_and_quoted_values() -> None:
    line = _line("relayed %s", "a reply", context={"team": "T1", "conversation": "c1"})
    assert line.endswith(
        ' level=info logger=slackrouter.x team=T1 conversation=c1 msg="relayed a reply"'
    )
    assert line.startswith("time=") and _line('say "hi"').endswith(r'msg="say \"hi\""')


def test_slack_tokens_never_reach_a_line() -> None:
    for token in ("xoxb-123-456-abc", "xoxe.xoxb-1-abc", "xapp-1-A1-2-def", "xoxe-1-refresh"):
        assert token not in _line("token %s", token)
    assert redact("Bearer xoxb-1-2-x ok") == "Bearer [redacted] ok"


def test_context_is_scoped_and_none_removes_a_field() -> None:
    _install_record_factory()

    def stamped() -> dict[str, str]:
        record = logging.getLogRecordFactory()("n", logging.INFO, "f", 1, "m", (), None)
        return dict(record.slackrouter_context)

    with log_context(team="T1", conversation="c1"):
        assert stamped() == {"team": "T1", "conversation": "c1"}
        bind_log_context(conversation=None)
        assert stamped() == {"team": "T1"}
    assert stamped() == {}
