"""Message history -> the one upstream prompt (protocol doc 1.8)."""

from __future__ import annotations

from gateway.openai.flatten import LATEST_HEADING, flatten_history, last_user_text
from gateway.openai.messages import Attachment, Message


def m(role: str, text: str, **kwargs: object) -> Message:
    return Message(role=role, text=text, **kwargs)  # type: ignore[arg-type]


def test_it_sends_a_lone_user_message_as_is() -> None:
    assert flatten_history([m("user", "What is 2+2?")]) == "What is 2+2?"


def test_it_puts_instructions_first_and_marks_the_latest_message() -> None:
    messages = [
        m("system", "Be brief."),
        m("user", "Hi"),
        m("assistant", "Hello!"),
        m("developer", "Answer in French."),
        m("user", "How are you?"),
    ]
    assert flatten_history(messages) == (
        f"Be brief.\n\nAnswer in French.\n\nuser: Hi\nassistant: Hello!\n\n{LATEST_HEADING}\nHow are you?"
    )


def test_it_decorates_a_single_question_with_a_system_prompt() -> None:
    assert flatten_history([m("system", "Be brief."), m("user", "Hi")]) == f"Be brief.\n\n{LATEST_HEADING}\nHi"


def test_it_skips_empty_instructions() -> None:
    assert flatten_history([m("system", "  "), m("user", "Hi")]) == f"{LATEST_HEADING}\nHi"


def test_it_keeps_messages_after_the_latest_user_message_in_order() -> None:
    messages = [
        m("user", "Weather in Paris?"),
        m("assistant", "[called tool weather with {}]"),
        m("tool", "sunny", name="weather"),
    ]
    assert flatten_history(messages) == (
        f"{LATEST_HEADING}\nWeather in Paris?\n\nassistant: [called tool weather with {{}}]\ntool (weather): sunny"
    )


def test_it_mentions_earlier_attachments_by_name_or_url() -> None:
    earlier = m(
        "user",
        "Look",
        attachments=(
            Attachment(kind="image", param="p", url="https://example.com/cat.png"),
            Attachment(kind="file", param="p", filename="report.pdf"),
            Attachment(kind="image", param="p"),
        ),
    )
    latest = m("user", "And this?", attachments=(Attachment(kind="file", param="q", filename="new.pdf"),))
    text = flatten_history([earlier, m("assistant", "Nice"), latest])
    assert "user: Look [image: https://example.com/cat.png] [file: report.pdf] [image: inline image]" in text
    assert "new.pdf" not in text


def test_it_labels_named_speakers() -> None:
    text = flatten_history([m("user", "Hi", name="alice"), m("user", "Hey", name="bob")])
    assert text == f"user (alice): Hi\n\n{LATEST_HEADING}\nHey"


def test_it_gives_only_the_newest_user_turn_for_a_continued_chat() -> None:
    messages = [m("system", "S"), m("user", "first"), m("assistant", "A"), m("user", "second"), m("tool", "t")]
    assert last_user_text(messages) == "second"
