"""The tables of slack_sdk's SQLAlchemy installation and OAuth state stores, in the app's own
database and migrations (revision 0006), beside the app's models.

The columns are slack_sdk's, built by its own table builders on the app's metadata, so the
stores read and write them unchanged. The token columns are wider than slack_sdk's 200
characters: they hold Fernet-encrypted tokens when SLACK_TOKEN_ENCRYPTION_KEY is set.
"""

from __future__ import annotations

from slack_sdk.oauth.installation_store.sqlalchemy import SQLAlchemyInstallationStore
from slack_sdk.oauth.state_store.sqlalchemy import SQLAlchemyOAuthStateStore
from sqlalchemy import String

from slackrouter.adapters.db.models import Base

INSTALLATIONS_TABLE = "slack_installations"
BOTS_TABLE = "slack_bots"
OAUTH_STATES_TABLE = "slack_oauth_states"
TOKEN_COLUMNS = ("bot_token", "bot_refresh_token", "user_token", "user_refresh_token")
TOKEN_LENGTH = 1000

installations = SQLAlchemyInstallationStore.build_installations_table(
    Base.metadata, INSTALLATIONS_TABLE
)
bots = SQLAlchemyInstallationStore.build_bots_table(Base.metadata, BOTS_TABLE)
oauth_states = SQLAlchemyOAuthStateStore.build_oauth_states_table(
    Base.metadata, OAUTH_STATES_TABLE
)
for _table in (installations, bots):
    for _name in TOKEN_COLUMNS:
        if _name in _table.c:
            _table.c[_name].type = String(TOKEN_LENGTH)
