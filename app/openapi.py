"""The OpenAPI document as committed in openapi/openapi.json (stable key order, trailing newline)."""

from __future__ import annotations

import json

from app.core.settings import Settings


def openapi_json() -> str:
    from app.main import create_app

    app = create_app(Settings(_env_file=None))
    return json.dumps(app.openapi(), indent=2, ensure_ascii=False, sort_keys=True) + "\n"
