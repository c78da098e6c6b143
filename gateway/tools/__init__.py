"""Client tools: function calling and structured output emulated over a chat that has neither (README.md)."""
