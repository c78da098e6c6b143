"""OpenAI's Responses API in the gateway's terms (pure wire shapes, no Django): the request parser
(request.py), the response object and its items (shapes.py), the event stream (stream.py) and the
sink the door plugs into the pipeline (sink.py). The door is gateway/api/responses.py."""
