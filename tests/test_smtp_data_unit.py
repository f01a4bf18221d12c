"""Unit and property tests of the DATA reader and the MAIL/RCPT parameter parser.

`DataCollector` (RFC 5321 §4.1.1.4, §4.5.2, §2.3.8) must give the same result wherever the
network cuts the stream, keep what follows the terminator byte for byte (RFC 2920
pipelining), and never end a message on anything but `<CRLF>.<CRLF>` (SMTP smuggling,
CVE-2023-51764 family). The parameter parser must turn any input into a result, a
`ParamError` or an `InvalidAddress`, never another exception (which would become a 451).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mssante.domain.errors import InvalidAddress
from mssante.smtp.data import MAX_LINE, DataCollector, DataOutcome
from mssante.smtp.params import MailArgs, ParamError, RcptArgs, parse_mail, parse_rcpt

MB = 1024 * 1024
TERMINATOR = b".\r\n"  # after the CRLF that ends the last line

# A line of a message: anything but CR and LF (NUL and 8-bit bytes are the body's business).
line_bytes = st.binary(max_size=120).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
# Lines that often start with a dot, so that transparency (§4.5.2) is exercised.
message_lines = st.lists(
    st.one_of(line_bytes, line_bytes.map(lambda b: b"." + b), st.just(b"."), st.just(b"..")),
    max_size=40,
)
# Whatever a pipelining client sends after the terminator, byte for byte.
leftover_bytes = st.one_of(
    st.just(b""),
    st.just(b"QUIT\r\n"),
    st.just(b"MAIL FROM:<a@alpha.mssante.fr>\r\nRCPT TO:<b@beta.mssante.fr>\r\nDATA\r\n"),
    st.binary(max_size=200),
)

UNIT = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def stuff(lines: list[bytes]) -> bytes:
    """The wire form of a message: dot-stuffed CRLF lines (RFC 5321 §4.5.2)."""
    return b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines)


def feed_split(collector: DataCollector, data: bytes, cuts: list[int]) -> None:
    points = sorted({min(max(c, 0), len(data)) for c in cuts})
    start = 0
    for point in [*points, len(data)]:
        collector.feed(data[start:point])
        start = point


def collect(data: bytes, cuts: list[int] | None = None, **kwargs: int) -> DataCollector:
    collector = DataCollector(max_size=kwargs.pop("max_size", 10 * MB), **kwargs)
    feed_split(collector, data, cuts or [])
    return collector


def body_of(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\r\n" for line in lines)


# -- chunk boundaries ---------------------------------------------------------------------


@UNIT
@given(
    lines=message_lines,
    leftover=leftover_bytes,
    cuts=st.lists(st.integers(min_value=0, max_value=6000), max_size=12),
)
def test_any_chunking_gives_the_same_message(
    lines: list[bytes], leftover: bytes, cuts: list[int]
) -> None:
    wire = stuff(lines) + TERMINATOR + leftover
    whole = collect(wire)
    split = collect(wire, cuts)
    for collector in (whole, split):
        assert collector.done
        assert collector.outcome is DataOutcome.OK
        assert bytes(collector.body) == body_of(lines)
        assert collector.leftover == leftover


@UNIT
@given(lines=message_lines, leftover=leftover_bytes)
def test_one_byte_at_a_time(lines: list[bytes], leftover: bytes) -> None:
    wire = stuff(lines) + TERMINATOR + leftover
    collector = collect(wire, list(range(len(wire))))
    assert collector.done and collector.outcome is DataOutcome.OK
    assert bytes(collector.body) == body_of(lines)
    assert collector.leftover == leftover


@pytest.mark.parametrize("cut", range(1, 6))
def test_terminator_split_across_chunks(cut: int) -> None:
    wire = b"Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n"
    end = wire.index(b"\r\n.\r\n")
    for point in range(end, end + cut):
        collector = collect(wire, [point])
        assert collector.done
        assert bytes(collector.body) == b"Subject: x\r\n\r\nbody\r\n"
        assert collector.leftover == b"QUIT\r\n"


def test_not_done_until_the_terminator_line_is_complete() -> None:
    collector = DataCollector(max_size=MB)
    for piece in (b"Subject: x\r\n\r\nbody\r\n", b".", b"\r"):
        collector.feed(piece)
        assert not collector.done
    collector.feed(b"\n")
    assert collector.done and collector.leftover == b""


def test_bytes_fed_after_done_go_to_leftover() -> None:
    collector = collect(b"a\r\n.\r\nNO")
    collector.feed(b"OP\r\n")
    assert collector.done and collector.leftover == b"NOOP\r\n"
    assert bytes(collector.body) == b"a\r\n"


def test_empty_message_and_stuffed_dots() -> None:
    assert bytes(collect(b".\r\n").body) == b""
    collector = collect(b"..\r\n...\r\n..x\r\n.\r\n")
    assert bytes(collector.body) == b".\r\n..\r\n.x\r\n"


# -- bare CR and LF (RFC 5321 §2.3.8) and the smuggling sequences --------------------------

SMUGGLING = [
    b"\n.\n",
    b"\r.\r",
    b"\r\n.\n",
    b"\n.\r\n",
    b"\r\n.\r",
    b"\r.\r\n",
    b"\n.\r",
    b"\r\n.\r\r\n",
    b"\r\n.\n\r\n",
    b"\n\n.\n\n",
    b"\r\r.\r\r",
]
SMUGGLED = (
    b"MAIL FROM:<admin@alpha.mssante.fr>\r\nRCPT TO:<victim@beta.mssante.fr>\r\nDATA\r\n"
    b"From: admin@alpha.mssante.fr\r\nSubject: smuggled\r\n\r\nsmuggled\r\n"
)


@pytest.mark.parametrize("sequence", SMUGGLING, ids=repr)
def test_smuggling_sequence_never_ends_the_message(sequence: bytes) -> None:
    wire = b"Subject: x\r\n\r\nbody" + sequence + SMUGGLED
    for cuts in ([], list(range(len(wire)))):
        collector = collect(wire, cuts)
        assert not collector.done
        assert collector.outcome is DataOutcome.BARE_NEWLINE
        collector.feed(b".\r\nQUIT\r\n")
        assert collector.done
        assert collector.outcome is DataOutcome.BARE_NEWLINE
        assert collector.body == b""  # nothing kept of a refused message
        assert collector.leftover == b"QUIT\r\n"


def test_nul_before_the_dot_is_not_a_terminator() -> None:
    collector = collect(b"Subject: x\r\n\r\nbody\r\n\x00.\r\n" + SMUGGLED + b".\r\n")
    assert collector.done and collector.outcome is DataOutcome.OK
    assert bytes(collector.body).count(b"MAIL FROM:") == 1  # one message, smuggled text inside
    assert collector.leftover == b""


@UNIT
@given(
    lines=st.lists(line_bytes, min_size=1, max_size=20),
    where=st.integers(min_value=0),
    bare=st.sampled_from([b"\r", b"\n", b"\n.", b"\r.", b"\n.\n", b"\r.\r"]),
    leftover=leftover_bytes,
    cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=8),
)
def test_any_bare_newline_refuses_the_message(
    lines: list[bytes], where: int, bare: bytes, leftover: bytes, cuts: list[int]
) -> None:
    wire = stuff(lines)
    # Insert the bare CR/LF somewhere that does not touch an existing CRLF.
    spots = [
        i for i in range(len(wire) + 1) if wire[i - 1 : i] != b"\r" and wire[i : i + 1] != b"\n"
    ]
    spot = spots[where % len(spots)]
    wire = wire[:spot] + bare + wire[spot:]
    if not wire.endswith(b"\r\n"):
        wire += b"\r\n"
    collector = collect(wire + TERMINATOR + leftover, cuts)
    assert collector.done
    assert collector.outcome is DataOutcome.BARE_NEWLINE
    assert collector.body == b""
    assert collector.leftover == leftover


# -- limits --------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [1000, 65536, 10 * MB])
def test_size_limit(chunk: int) -> None:
    body = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 2000  # ~2 MB
    wire = body + TERMINATOR + b"RSET\r\n"
    collector = collect(wire, list(range(0, len(wire), chunk)), max_size=MB)
    assert collector.done and collector.outcome is DataOutcome.TOO_BIG
    assert collector.body == b""
    assert collector.size == len(body)  # read to the end, the session stays in sync
    assert collector.leftover == b"RSET\r\n"
    exact = collect(body + TERMINATOR, max_size=len(body))
    assert exact.outcome is DataOutcome.OK and bytes(exact.body) == body


@pytest.mark.parametrize("chunk", [997, 65536])
def test_header_size_limit(chunk: int) -> None:
    # One header field folded over many lines and never followed by the blank line.
    header = b"X-Big: start\r\n" + (b" " + b"h" * 76 + b"\r\n") * 30_000  # ~2.3 MB
    wire = header + b"\r\nbody\r\n" + TERMINATOR
    collector = collect(wire, list(range(0, len(wire), chunk)), max_header_size=MB)
    assert collector.done and collector.outcome is DataOutcome.HEADER_TOO_BIG
    assert collector.body == b""
    # The same bytes in the body, after a small header, are fine.
    ok = collect(b"Subject: x\r\n\r\n" + header + TERMINATOR, max_header_size=MB)
    assert ok.outcome is DataOutcome.OK


def test_message_without_blank_line_over_header_limit() -> None:
    wire = b"Subject: x\r\n" * 100_000 + TERMINATOR
    assert collect(wire, max_header_size=MB).outcome is DataOutcome.HEADER_TOO_BIG
    assert collect(b"\r\n" + wire, max_header_size=MB).outcome is DataOutcome.OK


@pytest.mark.parametrize("chunk", [65536, 100_000, 3 * MB])
def test_two_megabyte_line_without_crlf(chunk: int) -> None:
    wire = b"Subject: x\r\n\r\n" + b"a" * (2 * MB) + b"\r\n" + TERMINATOR + b"NOOP\r\n"
    collector = collect(wire, list(range(0, len(wire), chunk)))
    assert collector.done
    assert collector.outcome is DataOutcome.BARE_NEWLINE
    assert collector.body == b""
    assert collector.leftover == b"NOOP\r\n"


def test_endless_line_keeps_memory_bounded() -> None:
    collector = DataCollector(max_size=100 * MB)
    collector.feed(b"Subject: x\r\n\r\n")
    for _ in range(100):  # 6.4 MB without a line ending
        collector.feed(b"a" * 65536)
        assert len(collector._pending) <= MAX_LINE + 1 + 65536
        assert len(collector.body) < 100
    assert collector.outcome is DataOutcome.BARE_NEWLINE and not collector.done


@pytest.mark.parametrize("extra", [-1, 0, 1, 2])
def test_line_limit_does_not_depend_on_chunking(extra: int) -> None:
    """A line of MAX_LINE octets (without CRLF) passes, one more is refused, however the
    stream is cut (one write, 64 KiB reads, a cut just before the CR or the LF)."""
    line = b"a" * (MAX_LINE + extra)
    wire = b"Subject: x\r\n\r\n" + line + b"\r\nend\r\n" + TERMINATOR
    at_cr = wire.index(b"\r\nend")
    expected = DataOutcome.OK if extra <= 0 else DataOutcome.BARE_NEWLINE
    for cuts in ([], list(range(0, len(wire), 65536)), [at_cr], [at_cr + 1], [at_cr - 1]):
        collector = collect(wire, cuts)
        assert collector.done and collector.outcome is expected, cuts


@pytest.mark.parametrize("extra", [0, 1])
def test_header_limit_does_not_depend_on_chunking(extra: int) -> None:
    limit = 64 * 1024
    fields = b"X-Fill: " + b"f" * 90 + b"\r\n"
    header = fields * (limit // len(fields))
    header += b"X-Pad: " + b"p" * (limit - len(header) - 9 + extra) + b"\r\n"
    assert len(header) == limit + extra
    wire = header + b"\r\nbody\r\n" + TERMINATOR
    expected = DataOutcome.OK if extra == 0 else DataOutcome.HEADER_TOO_BIG
    for chunk in (1000, 4096, 65536, len(wire)):
        collector = collect(wire, list(range(0, len(wire), chunk)), max_header_size=limit)
        assert collector.done and collector.outcome is expected, chunk


@pytest.mark.parametrize("tail", [b".\r", b"\r", b".", b"\n."])
def test_long_line_tail_is_not_a_line_start(tail: bytes) -> None:
    """A line cut down to its tail past 1 MB must not end the message: `.\\r` + `\\n` would
    otherwise read as the terminator and let the bytes after it through as commands."""
    collector = DataCollector(max_size=10 * MB)
    collector.feed(b"Subject: x\r\n\r\n")
    collector.feed(b"a" * (MB + 1) + tail)  # the chunk ends exactly on the tail
    collector.feed(b"\n" + SMUGGLED)
    assert not collector.done
    collector.feed(b".\r\nQUIT\r\n")
    assert collector.done
    assert collector.outcome is DataOutcome.BARE_NEWLINE
    assert collector.leftover == b"QUIT\r\n"


# -- MAIL and RCPT parameters --------------------------------------------------------------

TOKENS = st.sampled_from(
    [
        "FROM:",
        "TO:",
        "from:",
        " ",
        "<",
        ">",
        "@",
        ":",
        ",",
        "=",
        "+",
        ";",
        "\x00",
        "é",
        "a",
        "camille.martin",
        "alpha.mssante.fr",
        "@relay.fr,@b.fr:",
        "SIZE=",
        "1024",
        "99999999999999999999999",
        "BODY=",
        "8BITMIME",
        "7BIT",
        "SMTPUTF8",
        "RET=",
        "FULL",
        "HDRS",
        "ENVID=",
        "+2B",
        "+zz",
        "+E9",
        "+C3+A9",
        "NOTIFY=",
        "NEVER",
        "SUCCESS",
        "FAILURE,DELAY",
        "ORCPT=",
        "rfc822;",
        "AUTH=<>",
        "X-UNKNOWN",
        "\t",
        "\u212a",
    ]
)
PARAM_TEXT = st.one_of(st.text(max_size=200), st.lists(TOKENS, max_size=30).map("".join))
PARSE = settings(max_examples=500, deadline=None)


@PARSE
@given(arg=PARAM_TEXT, utf8=st.booleans())
def test_parse_mail_total(arg: str, utf8: bool) -> None:
    try:
        result = parse_mail(arg, smtputf8_allowed=utf8)
    except (ParamError, InvalidAddress):
        return
    assert isinstance(result, MailArgs)
    assert result.size is None or result.size >= 0
    assert result.envid is None or len(result.envid) <= 100


@PARSE
@given(arg=PARAM_TEXT)
def test_parse_rcpt_total(arg: str) -> None:
    try:
        result = parse_rcpt(arg)
    except (ParamError, InvalidAddress):
        return
    assert isinstance(result, RcptArgs)
    assert result.recipient
    assert result.notify is None or result.notify == "NEVER" or "NEVER" not in result.notify


@PARSE
@given(
    size=st.integers(min_value=0, max_value=10**12),
    body=st.sampled_from(["7BIT", "8bitmime"]),
    envid=st.text(alphabet=st.characters(codec="ascii", min_codepoint=0x21), max_size=30),
)
def test_parse_mail_valid(size: int, body: str, envid: str) -> None:
    from mssante.formats.dsn import xtext_encode

    encoded = xtext_encode(envid) if envid else "x"
    args = parse_mail(
        f"FROM:<Camille.Martin@ALPHA.mssante.fr> SIZE={size} BODY={body} RET=hdrs ENVID={encoded}"
    )
    assert args.sender == "camille.martin@alpha.mssante.fr"
    assert args.size == size and args.body == body.upper() and args.ret == "HDRS"
    assert args.envid == (envid or "x")


def test_parse_examples() -> None:
    assert parse_mail("FROM:<>").sender == ""
    assert parse_mail("FROM:<@a.fr,@b.fr:x@alpha.mssante.fr>").sender == "x@alpha.mssante.fr"
    rcpt = parse_rcpt("TO:<x@beta.mssante.fr> NOTIFY=failure,success ORCPT=rfc822;x+40b.fr")
    assert rcpt.notify == "FAILURE,SUCCESS" and rcpt.orcpt == "rfc822;x@b.fr"
    for bad in ("FROM:x@a.fr", "FROM:<x@a.fr", "TO:<x@a.fr>", "FROM:<x@a.fr> SIZE=-1"):
        with pytest.raises(ParamError):
            parse_mail(bad)
    with pytest.raises(ParamError) as info:
        parse_mail("FROM:<x@alpha.mssante.fr> FOO=1")
    assert info.value.unknown
    with pytest.raises(ParamError):
        parse_mail("FROM:<x@alpha.mssante.fr> SIZE=1 SIZE=2")
    with pytest.raises(ParamError):
        parse_rcpt("TO:<x@beta.mssante.fr> NOTIFY=NEVER,SUCCESS")
    with pytest.raises(InvalidAddress):
        parse_rcpt("TO:<>")
    with pytest.raises(InvalidAddress):
        parse_mail("FROM:<not an address>")
