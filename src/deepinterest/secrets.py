"""Keeping API keys out of files and terminals.

Keys reach a miner only through environment variables (``api_key_env`` names
one); yet a key can still be typed where it does not belong: as the value of
``api_key_env``, inside a ``base_url`` (``http://user:KEY@host/v1``), or under
a misspelt option name. Everything a run records (manifests, ``config.yaml``,
``items.jsonl``) and every config error passes through this module, so such a
key is neither written nor echoed:

- :func:`scrub_url` drops a URL's user, password and query (where keys hide);
- :func:`looks_like_key` spots a value shaped like an API key;
- :func:`redact` applies both to a nested config before it is written, and
  blanks the value of every key whose name suggests a secret.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

REDACTED = "<redacted>"
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Prefixes of common providers' keys (OpenAI, Anthropic, Hugging Face, Google, xAI,
# Groq, GitHub), and a generic long token mixing letters and digits.
_KEY_PREFIX = re.compile(r"^(sk|rk|pk)[-_]|^(hf|gsk|ghp|gho|xai)[-_]|^AIza", re.IGNORECASE)
_KEY_INSIDE = re.compile(r"\b(sk|key|api)[-_](?=[A-Za-z_\-]*\d)[A-Za-z0-9_\-]{8,}",
                         re.IGNORECASE)
_TOKEN = re.compile(r"^[A-Za-z0-9_\-]{12,}$")
_SECRET_NAME = re.compile(r"(^|_)(api_?key|key|token|secret|password|passwd|auth)$",
                          re.IGNORECASE)


def looks_like_key(value: str) -> bool:
    """True for a string shaped like an API key (a known prefix, or a long random token)."""
    text = value.strip()
    if not _TOKEN.match(text):  # keys have no spaces, slashes or dots (paths, ids, prose do)
        return False
    if _KEY_PREFIX.search(text) or _KEY_INSIDE.search(text):
        return True
    mixed = (any(c.islower() for c in text) and any(c.isupper() for c in text)
             and any(c.isdigit() for c in text))
    return len(text) >= 32 and mixed


def secret_name(name: str) -> bool:
    """True for an option name that suggests its value is a secret (``api_key``, ``token``)."""
    return bool(_SECRET_NAME.search(name)) and not name.endswith("_env")


def scrub_url(url: str) -> str:
    """``url`` without user, password or query; other strings unchanged."""
    if "://" not in url:
        return url
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # not a URL after all (an unparsable port, say)
        return url
    if not (parts.username or parts.password or parts.query):
        return url
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}{f':{port}' if port else ''}{parts.path}"


def redact(value: Any, name: str = "") -> Any:
    """A copy of a nested config safe to write: see the module docstring."""
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v, name) for v in value]
    if isinstance(value, str):
        if (secret_name(name) and value) or looks_like_key(value):
            return REDACTED
        return scrub_url(value)
    return value


def check_env_name(value: str) -> str:
    """``value`` when it can name an environment variable; never echoes it otherwise."""
    if not ENV_NAME.match(value) or looks_like_key(value):
        raise ValueError("api_key_env must be the name of an environment variable (letters, "
                         "digits and underscores, e.g. OPENAI_API_KEY), not the key itself; "
                         "put the key in that variable")
    return value
