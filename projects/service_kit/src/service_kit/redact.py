"""Keep API keys out of logs: query parameters named ``api_key`` lose their value.

Browsers cannot set headers on a WebSocket, so clients may send the key as ``?api_key=``;
uvicorn writes the full request target into its access and WebSocket log lines.  The name is
matched as Starlette would read it (percent-decoded, ``+`` as space), so ``api%5Fkey=`` is
redacted too.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus

REDACTED = "<redacted>"
SECRET_PARAMS = frozenset({"api_key"})

# A query parameter: after ? & or ;, a name, '=', and a value up to the next separator, double
# quote (uvicorn quotes the request line) or whitespace.  Applied to log text before JSON encoding.
_PARAM = re.compile(r"(?P<lead>[?&;])(?P<name>[^=&;?#\s\"]+)=(?P<value>[^&;#\s\"]*)")


def _replace(match: re.Match[str]) -> str:
    if unquote_plus(match["name"]).strip().lower() in SECRET_PARAMS and match["value"]:
        return f"{match['lead']}{match['name']}={REDACTED}"
    return match[0]


def redact_secrets(text: str) -> str:
    """``text`` with the value of every ``api_key`` query parameter replaced by ``<redacted>``."""
    if "=" not in text:
        return text
    return _PARAM.sub(_replace, text)
