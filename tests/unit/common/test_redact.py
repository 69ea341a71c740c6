"""Redaction of personal data from logged text, measured: precision and recall on a labelled corpus
of identifiers (positives) and look-alikes that are not personal data (negatives)."""

from __future__ import annotations

import re

import pytest

from components.common.redact import digest, for_log, redact

# (text, the identifiers in it that must go, each with its placeholder)
POSITIVES = [
    ("Write to jane.doe@example.com today", [("jane.doe@example.com", "<EMAIL>")]),
    ("From: \"Bob\" <bob_smith+lists@mail.example.co.uk>", [("bob_smith+lists@mail.example.co.uk", "<EMAIL>")]),
    ("cc: a@b.io, x.y-z@sub.domain.org.", [("a@b.io", "<EMAIL>"), ("x.y-z@sub.domain.org", "<EMAIL>")]),
    ("Reply to ADMIN@EXAMPLE.NET please", [("ADMIN@EXAMPLE.NET", "<EMAIL>")]),
    # found in the bundled production collection: an address run into a line of underscores
    ("please email Amy at Moderator@AEOpublishing.com____________", [("Moderator@AEOpublishing.com", "<EMAIL>")]),
    ("sites?CJcj5000@post.com____", [("cj5000@post.com", "<EMAIL>")]),
    ("Trade Links - walter@profits2you.com--------------------", [("walter@profits2you.com", "<EMAIL>")]),
    ("a hyphenated domain: info@my-shop.example-mail.com.", [("info@my-shop.example-mail.com", "<EMAIL>")]),
    ("Message-Id: <1234.5678@lists.sourceforge.net>", [("1234.5678@lists.sourceforge.net", "<EMAIL>")]),
    ("Call +1 (415) 555-2671 now", [("+1 (415) 555-2671", "<PHONE>")]),
    ("Phone: 415-555-2671 (office)", [("415-555-2671", "<PHONE>")]),
    ("Order by fax 1-800-555-0199!", [("1-800-555-0199", "<PHONE>")]),
    ("Ring 020 7946 0958 in London", [("020 7946 0958", "<PHONE>")]),
    ("Tel +44 20 7946 0958 or +49 30 901820", [("+44 20 7946 0958", "<PHONE>"), ("+49 30 901820", "<PHONE>")]),
    ("Ph +353 1 855 3467 Fax +353 1 855 3468", [("+353 1 855 3467", "<PHONE>"), ("+353 1 855 3468", "<PHONE>")]),
    ("call (212) 555-0143 for details", [("(212) 555-0143", "<PHONE>")]),
    ("mobile: +33 6 12 34 56 78", [("+33 6 12 34 56 78", "<PHONE>")]),
    ("Received: from mail.example.net [192.168.10.20] by mx", [("192.168.10.20", "<IP>")]),
    ("connect to 8.8.8.8.", [("8.8.8.8", "<IP>")]),
    ("v6 host 2001:db8:85a3::8a2e:370:7334 answered", [("2001:db8:85a3::8a2e:370:7334", "<IP>")]),
    ("loopback ::1 and fe80::1ff:fe23:4567:890a", [("fe80::1ff:fe23:4567:890a", "<IP>")]),
    ("card 4111 1111 1111 1111 exp 12/29", [("4111 1111 1111 1111", "<CARD>")]),
    ("pay with 5500-0000-0000-0004", [("5500-0000-0000-0004", "<CARD>")]),
    ("amex 378282246310005 on file", [("378282246310005", "<CARD>")]),
    ("IBAN GB82 WEST 1234 5698 7654 32 for transfers", [("GB82 WEST 1234 5698 7654 32", "<IBAN>")]),
    ("send to DE89370400440532013000 now", [("DE89370400440532013000", "<IBAN>")]),
    ("login at https://alice:hunter2@intranet.example.com/admin", [("alice:hunter2", "<URL_USER>")]),
    ("clone ssh://deploy@git.example.org/repo.git", [("deploy", "<URL_USER>")]),
]

NEGATIVES = [
    "Meeting on 2002-08-22 at 10:30:45, room 12",
    "Version 1.2.3.4 of the package, build 20020822",
    "Price: $1,299.99 or 3 payments of $433.33",
    "Order number 123456 shipped; tracking 12345",
    "ISBN 0-596-00281-6 is a good book",
    "commit 4f9a2b7c1d3e5f6a8b9c0d1e2f3a4b5c6d7e8f9a",
    "The years 1999-2002 were busy; 50% off",
    "Date: Thu, 22 Aug 2002 18:26:25 +0100",
    "ratio 3:2:1 and time 12:30",
    "zip code 94105 and PO Box 1234",
    "a card-like 4111 1111 1111 1112 that fails Luhn",
    "IBAN-like GB00 WEST 1234 5698 7654 32 with a bad check",
    "1234567890123 is not Luhn valid",
    "IP-like 999.10.10.10 is not an address",
    "email-like user@localhost or @handle or name at example dot com",
    "http://www.example.com/path?x=1 has no user",
    "call me maybe, number 5 please",
    "Subject: [SAtalk] 2.40 released (bug 1234)",
    "Mon, 2 Sep 2002 15:30:00 -0700 (PDT)",
    "the room holds 250 people, 12 rows of 20",
]


def _found(text: str, expected: list[tuple[str, str]]) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives) of one redaction."""
    out = redact(text)
    tp = sum(1 for secret, _ in expected if secret not in out)
    fn = len(expected) - tp
    placeholders = len(re.findall(r"<(EMAIL|PHONE|IP|CARD|IBAN|URL_USER)>", out))
    return tp, max(0, placeholders - len(expected)), fn


def test_precision_and_recall_on_the_labelled_corpus():
    tp = fp = fn = 0
    misses, extras = [], []
    for text, expected in POSITIVES:
        a, b, c = _found(text, expected)
        tp, fp, fn = tp + a, fp + b, fn + c
        if c:
            misses.append(redact(text))
    for text in NEGATIVES:
        _, b, _ = _found(text, [])
        fp += b
        if b:
            extras.append(redact(text))
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    print(f"redaction on {len(POSITIVES)} positive and {len(NEGATIVES)} negative texts: {tp + fn} identifiers, "
          f"precision {precision:.3f}, recall {recall:.3f}")
    assert recall == 1.0, f"identifiers left in: {misses}"
    assert precision >= 0.95, f"look-alikes redacted: {extras}"


@pytest.mark.parametrize("text, expected", POSITIVES)
def test_each_identifier_gets_its_typed_placeholder(text, expected):
    out = redact(text)
    for secret, placeholder in expected:
        assert secret not in out and placeholder in out, out


def test_the_modes_of_the_inference_log():
    text = "mail jane@example.com or call +1 415 555 2671"
    assert for_log(text, "raw") == text
    assert for_log(text, "redacted") == "mail <EMAIL> or call <PHONE>"
    assert for_log(text, "hashed") == digest(text) and for_log(text, "hashed").startswith("sha256:")
    assert "jane" not in for_log(text, "hashed")
    assert for_log(text, "none") is None
    with pytest.raises(ValueError, match="expected redacted, hashed, raw or none"):
        for_log(text, "masked")
