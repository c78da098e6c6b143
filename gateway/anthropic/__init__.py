"""Anthropic's Messages API as pure wire shapes (no Django): request -> neutral turn, events -> SSE.

``request.py`` (the body), ``content.py`` (messages and their content blocks), ``tools.py`` (tools and
``tool_choice`` -> the tool core's ``ToolSet``), ``thinking.py`` (signatures), ``events.py`` (the answer
as Anthropic's content blocks and stream events), ``sinks.py`` (the pipeline sinks), ``errors.py``.
The door is gateway/api/messages.py.
"""
