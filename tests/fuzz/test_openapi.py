"""schemathesis against the visitor API of a served `slackrouter run`: for data generated from
its OpenAPI document, valid and not, no 5xx and no answer that breaks the document.

The path parameters and the conversation token are a real chatflow's and conversation's, so the
generated bodies and queries reach the code behind the routing (not only a 404)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import BaseSchema, Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.resilience.harness import (
    Load,
    conversations,
    deployment,
    members,
    reps,
    running,
    send,
    until_routed,
)

pytestmark = pytest.mark.slow

EXAMPLES = 25  # per operation, and per kind of data (valid, invalid)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


@dataclass(frozen=True)
class Target:
    url: str
    public_key: str
    conversation_id: str
    conversation_token: str


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def target(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Target]:
    workdir = tmp_path_factory.mktemp("openapi")
    route = reps(2)
    async with deployment("sqlite", workdir, members(route)) as env:
        chatflow = await env.store.chatflow(route, escalation_seconds=3600)
        # A long-poll's `wait` is generated up to its maximum: keep each call short.
        app = env.app(MAX_WAIT_SECONDS="1", RATE_LIMIT_PER_VISITOR="100000")
        async with running(app):
            await until_routed(env.store, route)
            load = await send([app.url], chatflow.public_key, conversations(1, 1), Load())
            [accepted] = load.accepted.values()
            yield Target(
                app.url,
                chatflow.public_key,
                accepted["conversation_id"],
                accepted["conversation_token"],
            )


@pytest.fixture(scope="module")
def api(target: Target) -> BaseSchema:
    config = SchemathesisConfig.from_dict(
        {
            "base-url": target.url,
            "parameters": {
                "path.public_key": target.public_key,
                "path.conversation_id": target.conversation_id,
                "header.authorization": f"Bearer {target.conversation_token}",
                "query.token": target.conversation_token,
            },
            # An event stream never ends by itself: read what is there, then hang up.
            "max-stream-events": 1,
            "request-timeout": 10,
        }
    )
    return schemathesis.openapi.from_url(f"{target.url}/openapi.json", config=config)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_visitor_api_keeps_to_its_openapi_document(
    api: BaseSchema, mode: GenerationMode
) -> None:
    failures: dict[str, str] = {}
    operations = [result.ok() for result in api.get_all_operations()]
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        def call(case: Case) -> None:
            case.call_and_validate(checks=CHECKS)

        try:
            call()
        except FailureGroup as group:
            failures[operation.label] = "\n".join(str(failure) for failure in group.exceptions)
        except Failure as failure:
            failures[operation.label] = str(failure)
    print(f"\nschemathesis ({mode}): {len(operations)} operations, {len(failures)} failing")
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
