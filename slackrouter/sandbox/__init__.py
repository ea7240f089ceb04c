"""A local stand-in for Slack, for tests and `slackrouter demo`.

- `fake_slack.FakeSlack`: one workspace's state, served as Slack's Web API (ASGI), plus the
  people in it, whose posts reach the app as signed events; `fake_slack.pings_in` tells what in
  a message payload Slack would render as a mention.
- `slack_requests.SlackRequestSender`: Slack's signed requests (events, slash commands,
  interactions) sent to an app over HTTP, and builders for their payloads.
- `server.serve`: run any ASGI app on a free loopback port in the current event loop.
- `processes`: the app, the fake Slack and other servers as child processes on loopback (the
  benchmark's and the resilience tests' harness); `scratch_database`: a fresh migrated SQLite
  or PostgreSQL database for one such run, dropped after it.

Nothing is imported here, so importing the package costs nothing.
"""
