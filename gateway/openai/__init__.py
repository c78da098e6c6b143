"""The OpenAI side of the gateway, pure: no Django, no I/O; only the stdlib and ``gateway/kimi/base.py``.

Modules, in the order a request meets them:

* ``request.py``      ``parse_json_body(raw)``, ``parse_chat_request(body, ...) -> ChatRequest``
  (``messages.py`` validates one message and its parts into ``Message`` / ``Attachment``)
* ``model_names.py``  ``parse_model(name) -> ModelSpec`` (flags, agent ids, upstream models);
  ``ModelSpec.turn_request(text=..., files=...)`` builds the upstream ``TurnRequest``;
  ``advertised_models()`` for ``/v1/models``
* ``flatten.py``      ``flatten_history(messages)`` (new chat) / ``last_user_text(messages)`` (continued chat)
* ``chunks.py``       ``ReplyAssembler``: upstream events -> ``chat.completion.chunk`` dicts and the final
  ``chat.completion``; ``error_chunk(error)`` (uses ``textfilters.py`` and ``usage.py``)
* ``errors.py``       ``GatewayError`` tree -> status, ``body()``, ``headers()``; ``gateway_error_from_kimi(exc)``
"""
