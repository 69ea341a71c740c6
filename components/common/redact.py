"""Personal data out of logged text: typed placeholders for what identifies or reaches a person.

Replaced, in this order (an earlier kind wins where two overlap):
  <URL_USER>  the user (and password) part of a URL: https://<URL_USER>@host/...
  <EMAIL>     addresses in their real syntax (local@domain.tld)
  <IBAN>      two letters, two check digits, 11-30 letters/digits (grouped or not), mod-97 valid
  <CARD>      13-19 digits, grouped by spaces or dashes, Luhn valid
  <IP>        IPv4 (each part 0-255) and IPv6 (validated by `ipaddress`)
  <PHONE>     what Google's libphonenumber (`phonenumbers`) finds as a valid number for the
              configured regions (international "+CC ..." anywhere), and grouped digit runs of
              9-15 digits that start with + or ( or 0 or 1 (national formats it cannot place)
Dates, times, prices, versions and plain integers are left alone: they are the text's shape, which
drift monitoring needs. tests/unit/common/test_redact.py measures precision and recall on a labelled corpus of
positives and negatives.

Pure: no I/O, no framework imports.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterable

import phonenumbers

DEFAULT_REGIONS = ("US", "GB")
PLACEHOLDERS = ("<URL_USER>", "<EMAIL>", "<IBAN>", "<CARD>", "<IP>", "<PHONE>")

URL_USER = re.compile(r"(?i)\b((?:https?|ftp|ftps|sftp|ssh|git|s3|redis|postgres(?:ql)?|mysql|mongodb|amqp)://)"
                      r"[^\s/@:]+(?::[^\s/@]*)?@")
# The end is "the domain does not go on", not \b: mail text runs addresses into underscores
# ("Moderator@example.com____", which \b counts as word characters) and rules ("x@y.com-----").
EMAIL = re.compile(r"(?i)(?<![\w.+-])[\w.+-]{1,64}@"
                   r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,24}(?![a-z0-9]|-[a-z0-9])")
IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]){11,30}\b")
CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
IPV4 = re.compile(rf"(?<![\d.]){OCTET}(?:\.{OCTET}){{3}}(?!\d|\.\d)")  # a sentence's full stop may follow
IPV6 = re.compile(r"(?i)(?<![\w:])(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4}(?![\w:])")
# Grouped national numbers libphonenumber cannot place without a region: (0xx) xxx xxxx, 1-xxx-...
PHONE_GROUPED = re.compile(r"(?<![\w+])(?:\+|\(0?|0|1[ .-])[\d(][\d ().-]{7,20}\d(?![\w])")


def _luhn(digits: str) -> bool:
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d)
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def _iban_valid(candidate: str) -> bool:
    code = candidate.replace(" ", "")
    if not 15 <= len(code) <= 34:
        return False
    moved = code[4:] + code[:4]
    number = "".join(str(int(c, 36)) for c in moved)
    return int(number) % 97 == 1


def _card(match: re.Match) -> bool:
    digits = re.sub(r"\D", "", match.group())
    return 13 <= len(digits) <= 19 and _luhn(digits) and len(set(digits)) > 1


def _ipv6(match: re.Match) -> bool:
    text = match.group()
    if text.count(":") < 2 or sum(c.isalnum() for c in text) < 3:
        return False  # "::" or a time like 12:30:45 is not an address worth hiding
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return not re.fullmatch(r"\d{1,2}:\d{2}(:\d{2})?", text)


def _phone_grouped(match: re.Match) -> bool:
    digits = re.sub(r"\D", "", match.group())
    return 9 <= len(digits) <= 15 and not re.fullmatch(r"(19|20)\d\d[-.]\d\d[-.]\d\d", match.group().strip())


def _substitute(text: str, pattern: re.Pattern, placeholder: str, accept=None) -> str:
    def replace(match: re.Match) -> str:
        return placeholder if accept is None or accept(match) else match.group()

    return pattern.sub(replace, text)


# Where a phone number could be: a run of digits and separators with 7 or more digits. libphonenumber
# reads only these (scanning whole texts with it costs ~8 ms per email; the runs cost ~0.3 ms).
PHONE_CANDIDATE = re.compile(r"\+?\(?\d[\d ().-]{5,24}\d")


def _phones(text: str, regions: Iterable[str]) -> str:
    spans: list[tuple[int, int]] = []
    for candidate in PHONE_CANDIDATE.finditer(text):
        chunk = candidate.group()
        if sum(c.isdigit() for c in chunk) < 7:
            continue
        for region in regions:
            for found in phonenumbers.PhoneNumberMatcher(chunk, region, leniency=phonenumbers.Leniency.VALID):
                spans.append((candidate.start() + found.start, candidate.start() + found.end))
    if not spans:
        return text
    out, last = [], 0
    for start, end in sorted(spans):
        if start < last:
            last = max(last, end)
            continue
        out += [text[last:start], "<PHONE>"]
        last = end
    out.append(text[last:])
    return "".join(out)


def redact(text: str, regions: Iterable[str] = DEFAULT_REGIONS) -> str:
    """`text` with personal identifiers replaced by typed placeholders."""
    text = URL_USER.sub(lambda m: f"{m.group(1)}<URL_USER>@", text)
    text = EMAIL.sub("<EMAIL>", text)
    text = _substitute(text, IBAN, "<IBAN>", lambda m: _iban_valid(m.group()))
    text = _substitute(text, CARD, "<CARD>", _card)
    text = IPV4.sub("<IP>", text)
    text = _substitute(text, IPV6, "<IP>", _ipv6)
    text = _phones(text, regions)
    return _substitute(text, PHONE_GROUPED, "<PHONE>", _phone_grouped)


def digest(text: str) -> str:
    """What `log_text: hashed` keeps: equal texts stay equal (dedup, joins), the content does not.
    A short text can be guessed and checked against it: hashed is pseudonymous, not anonymous."""
    return "sha256:" + hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()


def for_log(text: str, mode: str) -> str | None:
    """The text as the inference log keeps it under `monitor.log_text`."""
    if mode == "raw":
        return text
    if mode == "redacted":
        return redact(text)
    if mode == "hashed":
        return digest(text)
    if mode == "none":
        return None
    raise ValueError(f"log_text {mode!r}: expected redacted, hashed, raw or none")
