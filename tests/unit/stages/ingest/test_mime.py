"""MIME: email detection, HTML to text, encoded words and charsets."""

from __future__ import annotations

from components.stages.ingest.mime import email_to_text, html_to_text, looks_like_email


def test_html_to_text_drops_scripts_and_keeps_structure():
    text = html_to_text("<html><style>x{}</style><p>One&amp;Two</p><script>evil()</script><div>Three</div></html>")
    assert text.split() == ["One&Two", "Three"]


def test_email_subject_encoded_words_and_charset_supersets():
    raw = b"Subject: =?iso-8859-1?q?caf=E9?=\nContent-Type: text/plain; charset=gb2312\n\n" + \
        "中文 testing 碁".encode("gbk")  # 碁 is GBK, not GB2312: decoded through the superset
    assert email_to_text(raw) == "café\n\n中文 testing 碁"


def test_looks_like_email_rejects_prose_with_a_colon():
    assert not looks_like_email(b"Note: this is prose.\nIt has a colon but no headers\n")
