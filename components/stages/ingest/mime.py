"""RFC 822 / MIME message -> plain text.

Handles multipart messages, quoted-printable and base64 transfer encodings, HTML-only messages
(turned into text), and any declared charset. Returns the subject plus the body text, which parts
the text came from and the defects the parser reported, or raises `UndecodableText` when no
charset we try decodes the body.
"""

from __future__ import annotations

import email
import email.policy
import html
import re
from dataclasses import dataclass
from email.message import Message
from html.parser import HTMLParser

# Tried in order when a part's declared charset is missing, unknown or wrong. cp1252 defines
# almost every byte, so it catches the usual 8-bit mail that lies about its charset.
FALLBACK_CHARSETS = ("utf-8", "cp1252")
# Mail software labels text with a charset but writes its superset (as browsers assume too).
SUPERSETS = {"gb2312": "gb18030", "gbk": "gb18030", "euc-cn": "gb18030", "x-gbk": "gb18030",
             "ks_c_5601-1987": "cp949", "euc-kr": "cp949", "shift_jis": "cp932", "big5": "big5hkscs",
             "iso-8859-1": "cp1252", "us-ascii": "cp1252", "tis-620": "cp874", "iso-8859-9": "cp1254"}


# Defects after which the parser did not find the message's declared MIME structure: its "text"
# would be the raw multipart body (boundary lines, part headers, base64) instead of what it says.
STRUCTURE_DEFECTS = frozenset({"StartBoundaryNotFoundDefect", "MultipartInvariantViolationDefect",
                               "NoBoundaryInMultipartDefect"})


class UndecodableText(ValueError):
    pass


@dataclass(frozen=True)
class EmailText:
    text: str
    # Which parts the text came from: "subject+plain", "subject+html", "plain", "html",
    # "subject only", "subject+raw body", "raw body" or "nothing".
    origin: str
    defects: tuple[str, ...] = ()  # every defect the parser reported, by class name, sorted

    @property
    def structure_defects(self) -> tuple[str, ...]:
        return tuple(d for d in self.defects if d in STRUCTURE_DEFECTS)


class _TextExtractor(HTMLParser):
    _SKIP = {"script", "style", "head", "title"}
    _BREAK = {"br", "p", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip_depth = 0

    def handle_starttag(self, tag, attrs):
        if tag in self._SKIP:
            self._skip_depth += 1
        elif tag in self._BREAK:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in self._SKIP and self._skip_depth:
            self._skip_depth -= 1
        elif tag in self._BREAK:
            self.parts.append("\n")

    def handle_data(self, data):
        if not self._skip_depth:
            self.parts.append(data)


_SPACES = re.compile(r"[ \t\r\f\v]+")
_BLANK_LINES = re.compile(r"\n\s*\n+")


def html_to_text(markup: str) -> str:
    parser = _TextExtractor()
    try:
        parser.feed(markup)
        parser.close()
    except Exception:  # malformed markup: keep what was parsed, then the rest without tags
        parser.parts.append(re.sub(r"<[^>]*>", " ", html.unescape(markup)))
    text = _SPACES.sub(" ", "".join(parser.parts))
    return _BLANK_LINES.sub("\n\n", text).strip()


def decode_bytes(payload: bytes, declared: str | None) -> str:
    candidates = [declared] if declared else ["us-ascii"]
    if declared and declared.lower() in SUPERSETS:
        candidates.append(SUPERSETS[declared.lower()])
    candidates += [c for c in FALLBACK_CHARSETS if c != declared]
    for charset in candidates:
        try:
            return payload.decode(charset)
        except (LookupError, UnicodeDecodeError):
            continue
    raise UndecodableText(f"body is not valid in {', '.join(candidates)}")


def _part_text(part: Message) -> str:
    payload = part.get_payload(decode=True)  # undoes base64 / quoted-printable
    if payload is None:
        raw = part.get_payload()
        return raw if isinstance(raw, str) else ""
    return decode_bytes(payload, part.get_content_charset())


def _decoded_subject(message: Message) -> str:
    raw = message.get("Subject")
    if raw is None:
        return ""
    try:
        parts = email.header.decode_header(str(raw))
        return "".join(
            chunk.decode(charset or "utf-8", errors="replace") if isinstance(chunk, bytes) else chunk
            for chunk, charset in parts
        ).strip()
    except Exception:
        return str(raw).strip()


def email_to_text(raw: bytes) -> str:
    """Subject and body text of one message; HTML parts are used only when no plain part exists."""
    return parse_email(raw).text


def parse_email(raw: bytes) -> EmailText:
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    plain: list[str] = []
    markup: list[str] = []
    parts = list(message.walk()) if message.is_multipart() else [message]
    defects = sorted({type(d).__name__ for part in parts for d in part.defects})
    for part in parts:
        if part.is_multipart():
            continue
        if part.get_content_disposition() == "attachment":
            continue
        if part.get_content_type() == "text/html":
            markup.append(_part_text(part))
        elif part.get_content_maintype() == "text":
            plain.append(_part_text(part))
    body, kind = "\n\n".join(p for p in plain if p.strip()), "plain"
    if not body:
        body, kind = "\n\n".join(html_to_text(m) for m in markup), "html"
    if not body.strip() and not message.is_multipart() and isinstance(message.get_payload(), str):
        # Broken structure (e.g. a multipart whose boundary never appears): the body as it is.
        body, kind = _part_text(message), "raw body"
    subject = _decoded_subject(message)
    has_body = bool(body.strip())
    origin = "+".join([*(["subject"] if subject else []), *([kind] if has_body else [])])
    origin = {"subject": "subject only", "": "nothing"}.get(origin, origin)
    return EmailText(f"{subject}\n\n{body}" if subject else body, origin, tuple(defects))


def looks_like_email(head: bytes) -> bool:
    """RFC 822 header block at the start: an mbox 'From ' line or several 'Name: value' lines."""
    text = head[:4096].decode("latin-1")
    lines = text.splitlines()
    if not lines:
        return False
    if lines[0].startswith("From "):
        return True
    headers = 0
    for line in lines[:30]:
        if not line.strip():
            break
        if re.match(r"^[A-Za-z][A-Za-z0-9-]{1,40}:\s", line):
            headers += 1
        elif not line[:1].isspace():
            return False
    return headers >= 2
