"""List paging: the ``continue`` token of a list cut at ``limit``, and where the next page starts.

The token holds the resourceVersion of the list and the last item's namespace and name; a
token older than the oldest watchable version is 410 Gone, as on the real server.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from controller.sandbox import apierrors as errors


def continue_token_after(resource_version: int, last_meta: dict[str, Any]) -> str:
    """The token for the page after the item whose metadata is `last_meta`."""
    return base64.b64encode(
        json.dumps(
            {
                "rv": resource_version,
                "ns": last_meta.get("namespace", ""),
                "name": last_meta["name"],
            }
        ).encode()
    ).decode()


def page_start(continue_token: str, oldest_watchable: int) -> tuple[str, str]:
    """(namespace, name) the next page starts after; 400 for a bad token, 410 for an old one."""
    try:
        token = json.loads(base64.b64decode(continue_token))
        start = (token["ns"], token["name"])
    except (ValueError, KeyError, TypeError) as e:
        raise errors.bad_request("continue key is not valid: illegal base64 data") from e
    if int(token.get("rv", 0)) < oldest_watchable:
        raise errors.gone(
            "The provided continue parameter is too old to display a consistent list "
            "result. You can start a new list without the continue parameter."
        )
    return start
