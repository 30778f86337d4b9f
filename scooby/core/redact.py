"""Secrets, by their shape: what the secret scan refuses in committed files and what no
message Scooby prints may ever carry (each match is replaced by `[redacted]`)."""

from __future__ import annotations

import re

# Each pattern is specific enough not to fire on ordinary shell or YAML (a bare `$1$HOME`
# is not a crypt hash: the salt/hash shape is).
SECRETS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "a private key",
        re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"),
    ),
    ("a K3S join token", re.compile(r"\bK10[0-9a-f]{64}::[A-Za-z0-9._-]+:[A-Za-z0-9]{8,}")),
    ("an AWS access key id", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    (
        "an AWS secret access key",
        re.compile(
            r"(?i)aws_?secret_?(?:access_?)?key[\"']?\s*[:=]\s*[\"']?[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])"
        ),
    ),
    ("a GitHub token", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b")),
    ("a GitHub token", re.compile(r"\bgithub_pat_[A-Za-z0-9_]{22,}\b")),
    (
        "a password hash",
        re.compile(
            r"\$(?:1|5|6)\$(?:rounds=\d+\$)?[./A-Za-z0-9]{1,16}\$[./A-Za-z0-9]{22,86}"
            r"|\$2[abxy]?\$\d\d\$[./A-Za-z0-9]{53}"
            r"|\$(?:y|gy|7)\$[./A-Za-z0-9]+\$[./A-Za-z0-9]*\$[./A-Za-z0-9]{43}"
        ),
    ),
)

# In a message, a private key is removed from its BEGIN line to its END line (or the end).
_PRIVATE_KEY_BLOCK = re.compile(
    r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----.*?"
    r"(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|\Z)",
    re.DOTALL,
)
# Messages redact more eagerly than the scan reports: no word boundaries (a token glued to
# other text is still a token) and shorter tails (a cut token is still someone's secret).
_EAGER = (
    re.compile(r"gh[pousr]_[A-Za-z0-9]{16,}"),
    re.compile(r"github_pat_[A-Za-z0-9_]{16,}"),
    re.compile(r"(?:AKIA|ASIA)[0-9A-Z]{12,}"),
    re.compile(r"K10[0-9a-f]{32,}(?:::[A-Za-z0-9._:-]*)?"),
)
REDACTED = "[redacted]"
_TAIL = re.compile(r"\[redacted\][A-Za-z0-9_/+=.-]+")
ECHO_LIMIT = 60  # characters of a user's value a message may show


def redact(text: str) -> str:
    text = _PRIVATE_KEY_BLOCK.sub(REDACTED, text)
    for pattern in (*_EAGER, *(p for _, p in SECRETS[1:])):
        text = pattern.sub(REDACTED, text)
    # What is glued to a secret (a second token right after the first) goes with it.
    return _TAIL.sub(REDACTED, text)


def shown(value: object, limit: int = ECHO_LIMIT) -> str:
    """`repr(value)`, secrets redacted, cut to `limit` characters: a message never echoes a
    huge value (redacted first: a cut could leave a token too short to be recognised)."""
    text = repr(redact(value) if isinstance(value, str) else value)
    if len(text) <= limit:
        return text
    return f"{text[: limit - 3]}... ({len(str(value)):,} characters)"
