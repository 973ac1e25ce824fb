"""POST /admin/onedrive/import: queue an import job → 202 {jobId, status, groups, statusUrl} (admin).

Body: {folderIds?, fileIds?, groupId? | groupName?, recursive?, isPrivate?}. Without
groupId/groupName each folder goes into a group named after it. The work runs in
the OneDriveImportWorkerFunction, invoked asynchronously.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types

from imagerepo import observability
from imagerepo.api import json_body, require_admin
from imagerepo.onedrive import importer
from imagerepo.onedrive.web import make_onedrive_app

app = make_onedrive_app()


@app.post("/admin/onedrive/import")
def start_import() -> Any:
    who = require_admin(app)
    job = importer.start(who, json_body(app))
    return Response(status_code=202, content_type=content_types.APPLICATION_JSON, body=json.dumps(job),
                    headers={"Location": job["statusUrl"]})


lambda_handler = observability.handler(app)
