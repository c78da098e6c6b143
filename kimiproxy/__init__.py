"""kimiproxy: an OpenAI-compatible gateway over Kimi's web chat."""

# The release; the default upstream User-Agent is "kimiproxy/<this>" (kimi-web-protocol.md C.4).
__version__ = "1.0.0"
