"""A local stand-in for Slack, for tests and `slackrouter demo`.

- `fake_slack.FakeSlack`: one workspace's state, served as Slack's Web API (ASGI), plus the
  people in it, whose posts reach the app as signed events; `fake_slack.pings_in` tells what in
  a message payload Slack would render as a mention.
- `slack_requests.SlackRequestSender`: Slack's signed requests (events, slash commands,
  interactions) sent to an app over HTTP, and builders for their payloads.
- `server.serve`: run any ASGI app on a free loopback port in the current event loop.

Nothing is imported here, so importing the package costs nothing.
"""
