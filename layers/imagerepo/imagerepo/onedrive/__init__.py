"""OneDrive administration and import, through MSAL and Microsoft Graph.

* :mod:`.config` - settings from the function's environment (secrets by ARN in AWS).
* :mod:`.crypto` - HKDF-SHA256 + AES-GCM for what is stored about a connection.
* :mod:`.msal_auth` - the MSAL auth-code flow and the per-admin encrypted token cache.
* :mod:`.graph` - the Graph client: timeouts, bounded retries, error mapping, paging.
* :mod:`.drive` - folder and file operations the admin API offers.
* :mod:`.importer` - import jobs: creation, the asynchronous worker, idempotency.
* :mod:`.web` - what the HTTP functions share (the re-authorization answer).
"""

from __future__ import annotations
