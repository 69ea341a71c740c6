"""A hand-made malformed-input set: every file here is a trap a real corpus contains.

`EXPECTED` records, per file, how many rows it yields and what happens to each, so tests can
check that every row is accounted for with the right reason.
"""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

GOOD_MAIL = b"""From: alice@example.com
To: bob@example.com
Subject: Lunch on Friday
Content-Type: text/plain; charset=us-ascii

Are we still on for lunch on Friday? The usual place at noon.
"""

MULTIPART_QP = b"""From: promo@example.net
Subject: =?utf-8?q?Gro=C3=9Fe_Rabatte?=
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="XYZ"

--XYZ
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

Gro=C3=9Fe Rabatte auf alle Artikel, nur heute! Klicken Sie hier =
f=C3=BCr Details.
--XYZ
Content-Type: text/html; charset=utf-8

<html><body><p>ignored because a plain part exists</p></body></html>
--XYZ--
"""

LATIN1_BODY = "Voilà un message très spécial, à lire tout de suite, cher client.".encode("latin-1")
BASE64_LATIN1 = (b"""From: x@example.fr
Subject: Offre
MIME-Version: 1.0
Content-Type: text/plain; charset=iso-8859-1
Content-Transfer-Encoding: base64

""" + base64.encodebytes(LATIN1_BODY))

HTML_ONLY = b"""From: shop@example.com
Subject: Deals
Content-Type: text/html; charset=utf-8

<html><head><style>p {color: red}</style></head><body><h1>Big deals</h1><p>Buy&nbsp;now &amp; save 50%</p>
<script>track()</script></body></html>
"""

BROKEN_MIME = b"""From: broken@example.com
Subject: Broken multipart
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="NOT-THERE"

This body never uses the declared boundary, so the MIME structure is broken,
but the text is still here and worth keeping.
"""

KOI8 = ("From: ivan@example.ru\nSubject: privet\nContent-Type: text/plain; charset=koi8-r\n\n"
        "Привет, это письмо в кодировке KOI8-R для проверки.\n").encode("koi8-r")

UNDECLARED_GARBAGE = (b"From: x@example.com\nSubject: \n\n" + bytes([0x81, 0x8D, 0x8F, 0x90, 0x9D]) * 20 + b"\n")

TINY = b"From: t@example.com\n\nok\n"

# No body at all: the subject is the only text (3 chars).
SUBJECT_ONLY = b"From: s@example.com\nSubject: Hi!\n\n"

# Only an attachment: its subject is the message's only text, long enough to be accepted.
ATTACHMENT_ONLY = b"""From: files@example.com
Subject: Quarterly figures attached for review
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="B1"

--B1
Content-Type: application/pdf
Content-Disposition: attachment; filename="q3.pdf"
Content-Transfer-Encoding: base64

JVBERi0xLjQKJcfsj6IKNSAwIG9iago8PC9MZW5ndGggNiAwIFI+PgpzdHJlYW0K
--B1--
"""

HUGE = b"From: h@example.com\nSubject: long\n\n" + b"word " * 10_000 + b"\n"

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4


def write_mail_folder(root: Path) -> dict:
    """Emails under ham/ and spam/ (+ a stray `unknown/` folder and a README beside them). Returns
    expected reasons."""
    files = {
        "ham/good.eml": (GOOD_MAIL, None),
        "ham/good-copy.eml": (GOOD_MAIL, "duplicate"),
        "ham/koi8.eml": (KOI8, None),
        "ham/base64-latin1.eml": (BASE64_LATIN1, None),
        "ham/broken-mime.eml": (BROKEN_MIME, "broken_mime"),
        "ham/subject-only.eml": (SUBJECT_ONLY, "too_short"),
        "ham/attachment-only.eml": (ATTACHMENT_ONLY, None),
        "ham/image.png": (PNG, "binary_content"),
        "ham/huge.eml": (HUGE, "too_long"),
        "spam/multipart-qp.eml": (MULTIPART_QP, None),
        "spam/html-only.eml": (HTML_ONLY, None),
        "spam/empty.eml": (b"", "empty_text"),
        "spam/tiny.eml": (TINY, "too_short"),
        "spam/garbage.eml": (UNDECLARED_GARBAGE, "undecodable"),
        "spam/zipped.eml.gz": (gzip.compress(GOOD_MAIL.replace(b"Friday", b"Monday")), None),
        "unknown/mystery.eml": (GOOD_MAIL.replace(b"Friday", b"Sunday"), "unknown_label"),
        # beside the label folders, not in one: its folder's name ("mail") is no label
        "README.txt": (b"Notes on this corpus: the ham and spam folders hold the messages.\n", "missing_label"),
    }
    for rel, (data, _) in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return {rel: reason for rel, (_, reason) in files.items()}


def write_tabular_folder(root: Path) -> dict[str, int]:
    """CSV / JSONL / Parquet traps. Returns the expected count per reason (None = accepted)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "good.csv").write_bytes(
        b'text,label\n'
        b'"A perfectly fine first message",ham\n'
        b'"Multi-line\nmessage, quoted",spam\n'
        b'"A perfectly fine first message",ham\n'          # duplicate
        b'"Too few columns"\n'                              # schema_mismatch
        b'"Extra column here",ham,oops\n'                   # schema_mismatch
        b'"No label on this one",\n'                        # missing_label
        b'"Label outside the allowed set",eggs\n'           # unknown_label
        b'"Caf\xe9 written in latin-1 inside utf-8",ham\n'  # undecodable
        b'"' + b"x" * 30_000 + b'",spam\n'                  # too_long (a huge line)
    )
    (root / "truncated.csv").write_bytes(
        b'text,label\n"Complete row before the cut",ham\n"This quoted field never clo')
    (root / "empty.csv").write_bytes(b"")
    with gzip.open(root / "zipped.csv.gz", "wb") as handle:
        handle.write(b"text,label\nGzipped rows are read too,spam\n")
    lines = [
        json.dumps({"text": "A JSON line that is fine", "label": "ham"}),
        "{not json at all",
        json.dumps(["a", "list"]),
        json.dumps({"label": "ham"}),
        json.dumps({"text": 12345, "label": "spam"}),
        json.dumps({"text": "Label as a number is coerced", "label": 7}),
        "",
        json.dumps({"text": "   "}),
    ]
    bad_byte = b'{"text": "bad \xff byte", "label": "ham"}\n'
    (root / "lines.jsonl").write_bytes("\n".join(lines).encode() + b"\n" + bad_byte)
    pq.write_table(pa.table({"text": [1, 2], "label": ["ham", "spam"]}), root / "wrong-type.parquet")
    pq.write_table(pa.table({"text": ["Parquet row that is fine"], "label": ["spam"]}), root / "ok.parquet")
    (root / "corrupt.parquet").write_bytes(b"PAR1 this is not really parquet PAR1")
    return {
        None: 2 + 1 + 1 + 1 + 1,      # good.csv 2, truncated.csv 1, zipped.csv.gz 1, jsonl 1, ok.parquet 1
        "duplicate": 1,
        "schema_mismatch": 2 + 3,     # 2 in good.csv; jsonl: not json, a list, no text field
        "missing_label": 1,           # good.csv (the label-less JSON line is empty text: that reason wins)
        "unknown_label": 1 + 1,       # eggs; label 7
        "undecodable": 1 + 1,         # latin-1 in csv; \xff in jsonl
        "too_long": 1,
        "truncated_record": 1,
        "empty_file": 1,
        "bad_type": 1 + 2,            # jsonl int text; parquet int text column (2 rows)
        "unreadable_file": 1,         # corrupt.parquet
        "empty_text": 1,
    }


def repeating_corpus(path, n: int, seed: int) -> None:
    """CSV rows drawn from a small pool of texts, so repeats land in every window; some differ from
    their first occurrence only in whitespace, so the quarantine must keep their own raw bytes."""
    rng = np.random.default_rng(seed)
    pool = [f"message number {i} about {['cats', 'dogs', 'boats'][i % 3]}" for i in range(n // 3)]
    lines = ["text,label"]
    for _ in range(n):
        i = int(rng.integers(0, len(pool)))
        pad = " " * int(rng.integers(0, 2))
        lines.append(f'"{pad}{pool[i]}{pad}",{"ham" if i % 2 else "spam"}')
    path.write_text("\n".join(lines) + "\n")
