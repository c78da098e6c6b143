"""Anthropic's ``system`` and ``messages`` -> the neutral history (``gateway.openai.messages.Message``).

* ``system``: a string or text blocks. A block that starts with ``x-anthropic-billing-header:`` (Claude
  Code's attribution line) is dropped: it is no instruction and changes with every version.
* ``role: "system"`` inside ``messages`` is system text too.
* User blocks: ``text``; ``image`` and ``document`` (``base64`` or ``url`` sources; a text document, or
  one given as ``content`` blocks, is inlined as text); ``tool_result`` (string or block content,
  ``is_error``), each one a ``role: tool`` message before the rest of the user's message.
* Assistant blocks: ``text``; ``tool_use`` (a call of the history, its ``input`` as JSON); ``thinking`` and
  ``redacted_thinking`` are dropped (earlier reasoning is never sent back upstream; any signature is
  accepted); ``server_tool_use`` / ``web_search_tool_result`` become a line saying what was searched and
  found.
* ``cache_control`` and ``citations`` on any block are ignored. A block of a type this module does not
  know is kept as its ``text`` when it has one, else as a label: a newer client is never refused for it.

Only the files of the last user message are decoded (``decode=True``); earlier ones keep a label.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
from collections.abc import Mapping

from gateway.kimi.base import FileBlob
from gateway.openai.errors import InvalidRequest, PayloadTooLarge
from gateway.openai.messages import Attachment, Message, PartBudget
from gateway.tools.spec import ToolCall

BILLING_HEADER = "x-anthropic-billing-header:"
ROLES = ("user", "assistant", "system")
_URL_RE = re.compile(r"https?://[^\s/]", re.IGNORECASE)
_EXTENSIONS = {"application/pdf": ".pdf", "text/plain": ".txt", "image/png": ".png", "image/jpeg": ".jpg"}


@dataclasses.dataclass(frozen=True)
class ContentLimits:
    max_parts: int
    max_file_bytes: int | None


def parse_system(raw: object) -> str:
    """The top-level ``system``: its text (billing header dropped); empty when absent."""
    if raw is None:
        return ""
    if isinstance(raw, str):
        return "" if raw.startswith(BILLING_HEADER) else raw
    if not isinstance(raw, list):
        raise _type_error("system", "a string or a list of text blocks")
    texts = []
    for i, block in enumerate(raw):
        if not isinstance(block, dict) or not isinstance(block.get("text"), str):
            raise _type_error(f"system.{i}", "a text block")
        text = block["text"]
        if not text.startswith(BILLING_HEADER):
            texts.append(text)
    return "\n\n".join(texts)


def parse_message(raw: object, index: int, *, decode: bool, parts: PartBudget, limits: ContentLimits) -> list[Message]:
    """One element of ``messages`` -> its messages (a user turn with tool results gives several)."""
    param = f"messages.{index}"
    if not isinstance(raw, dict):
        raise _type_error(param, "an object")
    role = raw.get("role")
    if role not in ROLES:
        raise InvalidRequest(
            f"{param}.role must be user or assistant; got {role!r:.40}.", param=f"{param}.role", code="invalid_value"
        )
    content = raw.get("content")
    if isinstance(content, str):
        return [Message(role=role, text=content)]
    if not isinstance(content, list):
        raise _type_error(f"{param}.content", "a string or a list of content blocks")
    parts.take(len(content), f"{param}.content")
    reader = _Blocks(role, param, decode=decode, limits=limits)
    for j, block in enumerate(content):
        reader.add(block, f"{param}.content.{j}")
    return reader.messages()


class _Blocks:
    """The blocks of one message, read in order."""

    def __init__(self, role: str, param: str, *, decode: bool, limits: ContentLimits) -> None:
        self.role, self.param, self.decode, self.limits = role, param, decode, limits
        self.texts: list[str] = []
        self.attachments: list[Attachment] = []
        self.calls: list[ToolCall] = []
        self.results: list[Message] = []

    def messages(self) -> list[Message]:
        text = "\n".join(self.texts)
        if self.role == "assistant":
            return [Message(role="assistant", text=text, tool_calls=tuple(self.calls))]
        rest = [Message(role=self.role, text=text, attachments=tuple(self.attachments))]
        if self.results and not text.strip() and not self.attachments:
            rest = []  # only tool results: the tool messages are the turn
        return [*self.results, *rest]

    def add(self, block: object, param: str) -> None:
        if not isinstance(block, dict):
            raise _type_error(param, "an object")
        kind = block.get("type")
        if kind == "text":
            self.texts.append(_string(block, "text", param))
        elif kind in ("thinking", "redacted_thinking"):
            return  # earlier reasoning: never sent back upstream
        elif kind == "image" or kind == "document":
            self._file(block, kind, param)
        elif kind == "tool_use" and self.role == "assistant":
            self.calls.append(_tool_use(block, param, index=len(self.calls)))
        elif kind == "tool_result" and self.role == "user":
            self.results.append(self._tool_result(block, param))
        elif kind == "server_tool_use":
            query = block.get("input", {}).get("query") if isinstance(block.get("input"), dict) else None
            self.texts.append(f"[searched the web for {query!r:.200}]" if query else "[searched the web]")
        elif kind == "web_search_tool_result":
            self.texts.append(_search_results(block.get("content")))
        elif isinstance(block.get("text"), str):
            self.texts.append(block["text"])
        else:
            self.texts.append(f"[{str(kind)[:40]} block]")

    def _file(self, block: Mapping[str, object], kind: str, param: str) -> None:
        source = block.get("source")
        if not isinstance(source, dict):
            raise _type_error(f"{param}.source", "an object")
        raw_title = block.get("title")
        title = raw_title if isinstance(raw_title, str) else None
        source_type = source.get("type")
        if kind == "document" and source_type == "text":
            data = _string(source, "data", f"{param}.source")
            self.texts.append(f"[document: {title}]\n{data}" if title else data)
        elif kind == "document" and source_type == "content":
            inner = source.get("content")
            texts = (
                [b["text"] for b in inner if isinstance(b, dict) and isinstance(b.get("text"), str)]
                if isinstance(inner, list)
                else []
            )
            self.texts.append("\n".join(texts) if not isinstance(inner, str) else inner)
        elif source_type == "base64":
            self.attachments.append(self._base64(source, kind, f"{param}.source", title))
        elif source_type == "url":
            url = _string(source, "url", f"{param}.source")
            if not _URL_RE.match(url):
                raise InvalidRequest(
                    f"{param}.source.url must be an http(s) URL.", param=f"{param}.source.url", code="invalid_url"
                )
            self.attachments.append(
                Attachment(
                    kind="image" if kind == "image" else "file", param=f"{param}.source.url", url=url, filename=title
                )
            )
        elif source_type == "file":
            raise InvalidRequest(
                "References to uploaded Anthropic files (file_id) are not supported; send the file as base64.",
                param=f"{param}.source.file_id",
                code="unsupported_parameter",
            )
        else:
            raise InvalidRequest(
                f"{param}.source.type must be base64 or url; got {source_type!r:.40}.",
                param=f"{param}.source.type",
                code="invalid_value",
            )

    def _base64(self, source: Mapping[str, object], kind: str, param: str, title: str | None) -> Attachment:
        mime = _string(source, "media_type", param).strip().lower()
        data = _string(source, "data", param)
        filename = title or ("image" if kind == "image" else "document") + _EXTENSIONS.get(mime, ".bin")
        if not self.decode:
            return Attachment(kind="image" if kind == "image" else "file", param=f"{param}.data", filename=title)
        max_bytes = self.limits.max_file_bytes
        if max_bytes is not None and len(data) * 3 // 4 > max_bytes:
            raise PayloadTooLarge(
                f"The file in {param} is larger than {max_bytes} bytes.", param=param, code="file_too_large"
            )
        payload = "".join(data.split())
        try:
            decoded = base64.b64decode(payload + "=" * (-len(payload) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest(
                f"{param}.data holds invalid base64 data.", param=f"{param}.data", code="invalid_base64"
            ) from None
        blob = FileBlob(name=filename, mime_type=mime, data=decoded)
        return Attachment(kind="image" if kind == "image" else "file", param=f"{param}.data", blob=blob, filename=title)

    def _tool_result(self, block: Mapping[str, object], param: str) -> Message:
        call_id = _string(block, "tool_use_id", param)
        content = block.get("content")
        attachments: tuple[Attachment, ...] = ()
        if content is None:
            text = ""
        elif isinstance(content, str):
            text = content
        elif isinstance(content, list):
            inner = _Blocks("user", param, decode=self.decode, limits=self.limits)
            for j, item in enumerate(content):
                inner.add(item, f"{param}.content.{j}")
            attachments = tuple(inner.attachments)  # images a tool returned (uploaded with the turn's files)
            mentions = [f"[{a.kind}: {a.label}]" for a in inner.attachments]
            text = "\n".join([*inner.texts, *mentions])
        else:
            raise _type_error(f"{param}.content", "a string or a list of content blocks")
        if block.get("is_error") is True:
            text = f"[the tool reported an error]\n{text}"
        return Message(role="tool", text=text, tool_call_id=call_id, attachments=attachments)


def _tool_use(block: Mapping[str, object], param: str, *, index: int) -> ToolCall:
    call_id = _string(block, "id", param)
    name = _string(block, "name", param)
    value = block.get("input", {})
    arguments = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return ToolCall(id=call_id, name=name, arguments=arguments, index=index)


def _search_results(content: object) -> str:
    if not isinstance(content, list):
        return "[web search results]"
    lines = [
        f"- {item.get('title') or item.get('url')} ({item.get('url')})"
        for item in content
        if isinstance(item, dict) and isinstance(item.get("url"), str)
    ]
    return "\n".join(["[web search results]", *lines])


def _string(block: Mapping[str, object], field: str, param: str) -> str:
    value = block.get(field)
    if not isinstance(value, str):
        raise _type_error(f"{param}.{field}", "a string")
    return value


def _type_error(param: str, expected: str) -> InvalidRequest:
    return InvalidRequest(f"{param} must be {expected}.", param=param, code="invalid_type")
