"""Shape the upstream prompt for the account reserved: the one stage that decides what Kimi reads.

Today: the flattened history for a new chat (gateway/openai/flatten.py), or only the newest user
message when a kept chat is continued, with the answered message's files uploaded to this account.
This is where the next features plug in (continuing a chat natively, history as an attachment, tool
instructions): each changes what ``upstream_turn`` builds, not the stages around it.
"""

from __future__ import annotations

import dataclasses

from gateway.chat.turn import Job, Turn
from gateway.kimi.base import KimiSession, TurnRequest
from gateway.kimi.uploads import upload_cached
from gateway.openai.flatten import flatten_history, last_user_text


def prompt_text(turn: Turn) -> str:
    """The whole history as one upstream message (what a new chat gets; logged and counted)."""
    return flatten_history(turn.messages)


async def upstream_turn(job: Job, *, session: KimiSession, account_id: int) -> TurnRequest:
    """The turn to send on this account: its text, its files (uploaded here, once per account) and,
    for a continued chat, where to continue (protocol doc 2.9: Connect needs the parent message id)."""
    files = tuple([await upload_cached(session=session, account_id=account_id, blob=b) for b in job.blobs])
    continued = job.continued
    if continued is None:
        return job.turn.model.turn_request(text=job.prompt_text, files=files)
    request = job.turn.model.turn_request(text=last_user_text(job.turn.messages), files=files)
    return dataclasses.replace(request, chat_id=continued.chat_id, parent_id=continued.parent_message_id or None)
