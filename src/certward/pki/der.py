"""A small, strict-enough DER/BER reader for the few structures certward pre-parses.

Only what the guards need: tag, length (definite or BER indefinite), content bounds,
and decoders for INTEGER, OBJECT IDENTIFIER and OCTET STRING. It never allocates
more than the input and refuses deep nesting, so hostile input costs microseconds.
A general ASN.1 library spends ten times longer on the same walk, which matters on
the path of every upload.

The few encoders at the end (`encode`, `encode_integer`, `encode_oid`) write the
PBMAC1 integrity MAC of the PKCS12 files certward makes (`certward.pki.pbmac1`).
"""

from __future__ import annotations

SEQUENCE = 0x30
SET = 0x31
INTEGER = 0x02
OCTET_STRING = 0x04
OCTET_STRING_CONSTRUCTED = 0x24
OID = 0x06
NULL = 0x05
CONTEXT_0 = 0xA0
CONTEXT_0_PRIMITIVE = 0x80

_MAX_DEPTH = 32


class DerError(ValueError):
    """The bytes are not the ASN.1 expected here."""


class Node:
    """One TLV: ``data[start:end]`` is its content; ``next`` is where the following one begins.

    A plain slotted class rather than a frozen dataclass: the walk creates dozens per
    file and a frozen ``__init__`` costs three times as much.
    """

    __slots__ = ("data", "end", "next", "start", "tag")

    def __init__(self, data: bytes, tag: int, start: int, end: int, next_: int) -> None:
        self.data = data
        self.tag = tag
        self.start = start
        self.end = end
        self.next = next_

    @property
    def content(self) -> bytes:
        return self.data[self.start : self.end]

    def children(self) -> list[Node]:
        """The TLVs inside a constructed node."""
        if not self.tag & 0x20:
            raise DerError(f"tag {self.tag:#x} is not constructed")
        out: list[Node] = []
        pos = self.start
        while pos < self.end:
            child = read(self.data, pos, self.end)
            out.append(child)
            pos = child.next
        return out

    def expect(self, tag: int) -> Node:
        if self.tag != tag:
            raise DerError(f"expected tag {tag:#x}, found {self.tag:#x}")
        return self


def read(data: bytes, pos: int = 0, end: int | None = None, *, _depth: int = 0) -> Node:
    """Read the TLV starting at ``pos`` (not beyond ``end``)."""
    limit = len(data) if end is None else end
    if pos + 2 > limit:
        raise DerError("truncated")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise DerError("multi-byte tags are not used in these structures")
    first = data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    elif first == 0x80:
        return _indefinite(data, tag, pos, limit, _depth)
    else:
        count = first & 0x7F
        if count > 4 or pos + count > limit:
            raise DerError("length out of range")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    if pos + length > limit:
        raise DerError("truncated")
    return Node(data, tag, pos, pos + length, pos + length)


def _indefinite(data: bytes, tag: int, start: int, limit: int, depth: int) -> Node:
    if not tag & 0x20:
        raise DerError("indefinite length on a primitive value")
    if depth >= _MAX_DEPTH:
        raise DerError("nested too deep")
    pos = start
    while True:
        if pos + 2 > limit:
            raise DerError("unterminated indefinite length")
        if data[pos] == 0 and data[pos + 1] == 0:
            return Node(data, tag, start, pos, pos + 2)
        pos = read(data, pos, limit, _depth=depth + 1).next


def integer(node: Node, *, max_bytes: int = 9) -> int:
    """An INTEGER's value; more than ``max_bytes`` of content raises (never a bignum)."""
    node.expect(INTEGER)
    content = node.content
    if not content or len(content) > max_bytes:
        raise DerError(f"integer of {len(content)} bytes")
    return int.from_bytes(content, "big", signed=True)


def octets(node: Node, *, _depth: int = 0) -> bytes:
    """An OCTET STRING's value, joining BER constructed chunks."""
    if node.tag == OCTET_STRING:
        return node.content
    if node.tag == OCTET_STRING_CONSTRUCTED and _depth < _MAX_DEPTH:
        return b"".join(octets(child, _depth=_depth + 1) for child in node.children())
    raise DerError(f"expected an octet string, found tag {node.tag:#x}")


def oid_bytes(dotted: str) -> bytes:
    """The DER content of an OBJECT IDENTIFIER, for fast comparisons with `Node.content`."""
    arcs = [int(a) for a in dotted.split(".")]
    out = bytearray()
    for arc in (40 * arcs[0] + arcs[1], *arcs[2:]):
        chunk = [arc & 0x7F]
        rest = arc >> 7
        while rest:
            chunk.append(0x80 | (rest & 0x7F))
            rest >>= 7
        out.extend(reversed(chunk))
    return bytes(out)


def oid(node: Node) -> str:
    """An OBJECT IDENTIFIER in dotted form."""
    node.expect(OID)
    content = node.content
    if not content:
        raise DerError("empty object identifier")
    arcs: list[int] = []
    value = 0
    for byte in content:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
        elif value > 1 << 64:
            raise DerError("object identifier arc too large")
    if content[-1] & 0x80:
        raise DerError("truncated object identifier")
    first = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in (first, arcs[0] - 40 * first, *arcs[1:]))


def encode(tag: int, *contents: bytes) -> bytes:
    """One DER TLV whose content is ``contents`` joined (already encoded children)."""
    content = b"".join(contents)
    length = len(content)
    if length < 0x80:
        return bytes([tag, length]) + content
    size = (length.bit_length() + 7) // 8
    return bytes([tag, 0x80 | size]) + length.to_bytes(size, "big") + content


def encode_integer(value: int) -> bytes:
    """A DER INTEGER (minimal two's complement)."""
    size = value.bit_length() // 8 + 1
    return encode(INTEGER, value.to_bytes(size, "big", signed=True))


def encode_oid(dotted: str) -> bytes:
    """A DER OBJECT IDENTIFIER."""
    return encode(OID, oid_bytes(dotted))
