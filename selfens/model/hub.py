"""Whether the Hugging Face hub can be reached, asked once and quickly, so that something neither
cached nor downloadable fails at once instead of after minutes of download retries."""

from __future__ import annotations

import os
import socket

_TRUE = {"1", "ON", "YES", "TRUE"}


def hub_reachable(timeout: float = 3.0) -> bool:
    """False when HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set, else whether one TCP connect to the
    hub's endpoint succeeds within `timeout` seconds."""
    from urllib.parse import urlparse

    from huggingface_hub import constants

    offline = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    if offline.upper() in _TRUE:
        return False
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
        return True
    except OSError:
        return False
