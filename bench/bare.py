"""The bare endpoint the ingest figure is divided by: the visitor API's message route on the same
server stack (uvicorn, FastAPI, the same request model), parsing the JSON and answering JSON,
with nothing behind it.

    python -m bench.bare PORT
"""

from __future__ import annotations

import sys
import uuid

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from slackrouter.api.schemas import MessageIn


def create_bare() -> FastAPI:
    api = FastAPI(title="bare JSON endpoint")

    @api.post("/v1/chatflows/{public_key}/messages", status_code=201)
    async def post_message(public_key: str, message: MessageIn) -> JSONResponse:
        return JSONResponse(
            {
                "conversation_id": uuid.uuid4().hex,
                "client_message_id": message.client_message_id,
                "status": "routed",
            },
            status_code=201,
        )

    return api


def main() -> None:
    port = int(sys.argv[1])
    # As `slackrouter run` serves the app: uvicorn's defaults, one process.
    uvicorn.run(create_bare(), host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
