"""The gateway's admin: API keys (``keys.py``), request logs and upstream conversations (``records.py``).

Django's admin autodiscovery imports this package; importing both modules registers their ModelAdmins.
"""

from gateway.admin import keys, records  # noqa: F401
