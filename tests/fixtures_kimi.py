"""Fake Kimi server fixtures (owned by the fake-server work; see gateway/kimi/fake/)."""
