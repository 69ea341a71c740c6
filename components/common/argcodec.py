"""Command-line arguments that survive a shell: what a process on the cluster is given must reach
it unchanged even when something joins its argv with spaces and hands it to `sh -c`.

Katib's metrics-collector webhook does exactly that to a trial's primary container
(kubeflow/katib pkg/webhook/v1beta1/pod/utils.go, `wrapWorkerContainer`: `strings.Join(args, " ")`
then `sh -c`), so a JSON argument such as `{"features":{"char_ngrams":[]}}` loses its quotes and
breaks into words. Every argument Conveyor puts in a trial's command is therefore drawn from a
set of characters no POSIX shell (dash, bash) treats specially in a word:

    A-Z a-z 0-9 _ . / : = , + @ % -

(no quotes, spaces, `$`, backquotes, globs, `~`, braces, `#`, redirections or separators). Two
encodings get values into that set:
  - a whole config object: base64url of its compact JSON, without padding (`encode_object`);
  - one parameter value (a Katib categorical, a string with spaces, a list): percent-encoding of
    its compact JSON, or of the plain string (`encode_value`); safe values stay as they are, so
    `0.01`, `64` and `embedding_bag` read the same in Katib's UI and in the trial's argv.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import urllib.parse
from typing import Any

from components.common.errors import ConfigError

SHELL_SAFE = re.compile(r"^[A-Za-z0-9_./:=,+@%-]+$")
# urllib's quote() never escapes "_.-~"; "~" starts a tilde expansion, so it is escaped by hand.
_QUOTE_SAFE = ",:=@+/"


def is_shell_safe(arg: str) -> bool:
    return bool(SHELL_SAFE.match(arg))


def encode_object(value: dict[str, Any]) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_object(text: str, option: str) -> dict[str, Any]:
    """The object `encode_object` made; a ConfigError naming `option` for anything else."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        value = json.loads(raw.decode())
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{option}: expected base64url of a JSON object ({exc})") from exc
    if not isinstance(value, dict):
        raise ConfigError(f"{option}: expected a JSON object, got {type(value).__name__}")
    return value


def encode_value(value: Any) -> str:
    """One parameter value as a shell-safe word that `decode_value` turns back into it."""
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    if is_shell_safe(text) and "%" not in text:
        return text
    return urllib.parse.quote(text, safe=_QUOTE_SAFE).replace("~", "%7E")


def decode_value(text: str) -> Any:
    """Percent-decoded, then JSON where it parses (numbers, lists, booleans, null), else the string."""
    plain = urllib.parse.unquote(text)
    try:
        return json.loads(plain)
    except json.JSONDecodeError:
        return plain
