"""The local runtime: Postgres, SeaweedFS and a gateway serving template.yaml, no Docker."""
