"""Making untrusted text safe inside one self-contained HTML file.

Everything the report shows from a rollout (messages, tool calls, task ids, even signal names) came
from a model, a user simulator or an imported dump, so it is untrusted. Three layers keep it inert:

1. HTML text goes through Jinja2 with autoescape on (``&<>"'`` become entities).
2. Data for the episode browser travels as JSON inside ``<script type="application/json">``; the
   browser never executes that block, and :func:`json_for_script` escapes every character that could
   end it early or be read as markup (``<``, ``>``, ``&``) plus U+2028/U+2029, which some JavaScript
   parsers treat as line ends. The page's script reads it with ``JSON.parse`` and writes rollout text
   with ``textContent`` only, never ``innerHTML``.
3. A Content-Security-Policy meta forbids every load (``default-src 'none'``) and allows only the
   page's own inline script, named by its SHA-256 hash, so an injected ``<script>`` or ``onerror=``
   attribute would not run even if the first two layers failed.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from calib.jsonutil import plain

_SCRIPT_ESCAPES = {
    ord("<"): "\\u003c",
    ord(">"): "\\u003e",
    ord("&"): "\\u0026",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}


def json_for_script(obj: Any) -> str:
    """JSON text that is safe verbatim inside ``<script type="application/json">...</script>``.

    ``json.dumps`` already escapes quotes and control characters; the translation adds ``<``, ``>``,
    ``&`` (so ``</script>`` and ``<!--`` cannot appear) and U+2028/U+2029. ``JSON.parse`` reads the
    ``\\uXXXX`` escapes back to the original characters.
    """
    text = json.dumps(plain(obj), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.translate(_SCRIPT_ESCAPES)


def script_hash(source: str) -> str:
    """CSP source expression (``'sha256-...'``) for an inline script with exactly this text."""
    digest = hashlib.sha256(source.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


def content_security_policy(script_sources: list[str]) -> str:
    """The page's CSP: nothing may load; only the given inline scripts run; inline styles and
    ``data:`` images (matplotlib SVG rasters, the blank favicon) are allowed."""
    scripts = " ".join(script_hash(s) for s in script_sources) or "'none'"
    return (
        "default-src 'none'; "
        f"script-src {scripts}; "
        "style-src 'unsafe-inline'; "
        "img-src data:; "
        "base-uri 'none'; form-action 'none'"
    )
