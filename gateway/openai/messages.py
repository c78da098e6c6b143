"""One chat message from the request body -> ``Message`` (text + attachments). Used by ``request.py``.

Content is a string, ``null`` (assistant messages with ``tool_calls`` only) or a list of parts:

* ``{"type": "text", "text": ...}`` (also ``input_text`` and an assistant's ``refusal``);
* ``{"type": "image_url", "image_url": {"url": ...}}`` or ``"image_url": "<url>"``;
* ``{"type": "file", "file_url": {"url": ...}}`` (the ancestor's form, protocol doc 1.8);
* ``{"type": "file", "file": {"file_data": "data:...;base64,...", "filename": ...}}`` (OpenAI's form; a
  bare base64 ``file_data`` is accepted too, its type guessed from ``filename``).

URLs must be ``http(s)://`` or ``data:``. Only the attachments of the message the reply answers are
decoded (``decode=True``); earlier ones keep just a label for the flattened history. An assistant
message's ``reasoning_content`` is dropped, and so is a leading ``<think>...</think>`` in its content:
earlier reasoning is never sent back upstream.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import mimetypes
import re
from typing import Literal
from urllib.parse import unquote_to_bytes

from gateway.kimi.base import FileBlob
from gateway.openai.errors import InvalidRequest, PayloadTooLarge
from gateway.tools.spec import ToolCall, parse_openai_history_calls

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
_THINK_PREFIX_RE = re.compile(r"\A\s*<think>.*?</think>\s*", re.DOTALL)
_DATA_URL_RE = re.compile(r"data:(?P<mime>[^;,]*)(?P<params>(?:;[^;,]*)*),", re.IGNORECASE)
_TEXT_TYPES = ("text", "input_text", "refusal")
# Python's built-in table only (no /etc/mime.types), so names and types do not depend on the host.
_MIME_TYPES = mimetypes.MimeTypes()
for _type, _ext in [
    ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", ".docx"),
    ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", ".xlsx"),
    ("application/vnd.openxmlformats-officedocument.presentationml.presentation", ".pptx"),
    ("text/markdown", ".md"),
    ("image/webp", ".webp"),
]:
    _MIME_TYPES.add_type(_type, _ext)


def strip_think_prefix(text: str) -> str:
    """An assistant text without the ``<think>...</think>`` a client may send back with it."""
    return _THINK_PREFIX_RE.sub("", text)


@dataclasses.dataclass(frozen=True)
class Attachment:
    """A file or image in a message. Exactly one of ``url`` / ``blob`` is set when decoded.

    ``url`` is an http(s) URL the caller downloads (through the SSRF guard); ``blob`` holds the bytes
    of a ``data:`` URL. ``param`` locates the part in the request, for error messages.
    """

    kind: Literal["image", "file"]
    param: str
    url: str | None = None
    blob: FileBlob | None = None
    filename: str | None = None

    @property
    def label(self) -> str:
        """How the flattened history mentions it: file name, else URL, else "inline image/file"."""
        if self.filename:
            return self.filename
        if self.url:
            return self.url
        return f"inline {self.kind}"


@dataclasses.dataclass(frozen=True)
class Message:
    role: str  # "function" is read as "tool"
    text: str
    attachments: tuple[Attachment, ...] = ()
    name: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()  # an assistant's calls, ids as the client sent them
    tool_call_id: str | None = None  # a tool result: the call it answers


@dataclasses.dataclass
class PartBudget:
    """Counts content parts over the whole request against ``max_parts``."""

    max_parts: int
    used: int = 0

    def take(self, count: int, param: str) -> None:
        self.used += count
        if self.used > self.max_parts:
            raise InvalidRequest(
                f"Too many content parts: at most {self.max_parts} in one request.", param=param, code="too_many_parts"
            )


def parse_message(raw: object, index: int, *, decode: bool, parts: PartBudget, max_file_bytes: int | None) -> Message:
    """Validate one element of ``messages``; ``decode`` turns ``data:`` URLs into bytes."""
    param = f"messages[{index}]"
    if not isinstance(raw, dict):
        raise _type_error(param, "an object")
    role = raw.get("role")
    if role not in ROLES:
        raise InvalidRequest(
            f"{param}.role must be one of system, developer, user, assistant, tool; got {role!r:.40}.",
            param=f"{param}.role",
            code="invalid_value",
        )
    role = "tool" if role == "function" else role
    name = raw.get("name")
    if name is not None and not isinstance(name, str):
        raise _type_error(f"{param}.name", "a string")
    text, attachments = _parse_content(raw.get("content"), role, param, decode, parts, max_file_bytes)
    calls: tuple[ToolCall, ...] = ()
    if role == "assistant":
        text = strip_think_prefix(text)
        calls = parse_openai_history_calls(raw.get("tool_calls"), param=f"{param}.tool_calls")
    call_id = raw.get("tool_call_id") if role == "tool" else None
    if call_id is not None and not isinstance(call_id, str):
        raise _type_error(f"{param}.tool_call_id", "a string")
    return Message(
        role=role, text=text, attachments=attachments, name=name or None, tool_calls=calls, tool_call_id=call_id
    )


def _parse_content(
    content: object, role: str, param: str, decode: bool, parts: PartBudget, max_file_bytes: int | None
) -> tuple[str, tuple[Attachment, ...]]:
    if isinstance(content, str):
        return content, ()
    if content is None:
        if role == "assistant":  # content may be null when the message carries tool_calls
            return "", ()
        raise InvalidRequest(
            f"{param}.content is required.", param=f"{param}.content", code="missing_required_parameter"
        )
    if not isinstance(content, list):
        raise _type_error(f"{param}.content", "a string or a list of content parts")
    parts.take(len(content), f"{param}.content")
    texts: list[str] = []
    attachments: list[Attachment] = []
    for j, part in enumerate(content):
        part_param = f"{param}.content[{j}]"
        if not isinstance(part, dict):
            raise _type_error(part_param, "an object")
        kind = part.get("type")
        if kind in _TEXT_TYPES:
            field = "refusal" if kind == "refusal" else "text"
            value = part.get(field)
            if not isinstance(value, str):
                raise _type_error(f"{part_param}.{field}", "a string")
            texts.append(value)
        elif kind in ("image_url", "file"):
            attachments.append(_parse_attachment(part, kind, part_param, decode, max_file_bytes))
        else:
            raise InvalidRequest(
                f"Content part type {kind!r:.40} is not supported; use text, image_url or file.",
                param=f"{part_param}.type",
                code="unsupported_content_type",
            )
    return "\n".join(texts), tuple(attachments)


def _parse_attachment(
    part: dict[str, object], kind: str, param: str, decode: bool, max_file_bytes: int | None
) -> Attachment:
    if kind == "image_url":
        value = part.get("image_url")
        url_param = f"{param}.image_url" + ("" if isinstance(value, str) else ".url")
        url, filename = _url_field(value, url_param), None
    elif "file_url" in part:
        value = part.get("file_url")
        url_param = f"{param}.file_url" + ("" if isinstance(value, str) else ".url")
        url, filename = _url_field(value, url_param), None
    else:
        url, filename, url_param = _openai_file(part.get("file"), f"{param}.file")
    if url.startswith("data:"):
        blob = _decode_data_url(url, url_param, filename, max_file_bytes) if decode else None
        img = kind == "image_url" if blob is None else blob.kind == "image"
        return Attachment(kind="image" if img else "file", param=url_param, blob=blob, filename=filename)
    if not re.match(r"https?://[^\s/]", url, re.IGNORECASE):
        raise InvalidRequest(f"{url_param} must be an http(s) URL or a data: URL.", param=url_param, code="invalid_url")
    return Attachment(kind="image" if kind == "image_url" else "file", param=url_param, url=url, filename=filename)


def _url_field(value: object, param: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("url"), str):
        return str(value["url"])
    raise _type_error(param, "a URL string")


def _openai_file(value: object, param: str) -> tuple[str, str | None, str]:
    if not isinstance(value, dict):
        raise _type_error(param, "an object")
    filename = value.get("filename")
    if filename is not None and not isinstance(filename, str):
        raise _type_error(f"{param}.filename", "a string")
    data = value.get("file_data")
    if data is None and "file_id" in value:
        raise InvalidRequest(
            "References to uploaded OpenAI files (file_id) are not supported; send file_data instead.",
            param=f"{param}.file_id",
            code="unsupported_parameter",
        )
    if not isinstance(data, str):
        raise _type_error(f"{param}.file_data", "a string (a data: URL or base64)")
    if not data.startswith("data:"):  # bare base64: the type comes from the file name
        mime = _MIME_TYPES.guess_type(filename or "")[0] or "application/octet-stream"
        data = f"data:{mime};base64,{data}"
    return data, filename or None, f"{param}.file_data"


def _decode_data_url(url: str, param: str, filename: str | None, max_bytes: int | None) -> FileBlob:
    match = _DATA_URL_RE.match(url)
    if not match:
        raise InvalidRequest(f"{param} is not a valid data: URL.", param=param, code="invalid_url")
    payload = url[match.end() :]
    is_base64 = ";base64" in match["params"].lower()
    size = len(payload) * 3 // 4 if is_base64 else len(payload)
    if max_bytes is not None and size > max_bytes:
        raise PayloadTooLarge(
            f"The file in {param} is larger than {max_bytes} bytes.", param=param, code="file_too_large"
        )
    if is_base64:  # tolerate line breaks and missing padding, as browsers do
        payload = "".join(payload.split())
        payload += "=" * (-len(payload) % 4)
    try:
        data = base64.b64decode(payload, validate=True) if is_base64 else unquote_to_bytes(payload)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"{param} holds invalid base64 data.", param=param, code="invalid_url") from None
    mime = match["mime"].strip().lower() or "text/plain"
    return FileBlob(name=filename or _default_name(mime), mime_type=mime, data=data)


def _default_name(mime: str) -> str:
    ext = _MIME_TYPES.guess_extension(mime) or ".bin"
    return ("image" if mime.startswith("image/") else "file") + ext


def _type_error(param: str, expected: str) -> InvalidRequest:
    return InvalidRequest(f"{param} must be {expected}.", param=param, code="invalid_type")
