from __future__ import annotations

from imagerepo_cli.main import main

raise SystemExit(main())
