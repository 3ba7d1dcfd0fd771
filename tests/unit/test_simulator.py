"""The simulator's wire protocol: error bytes and the message framer (no upstream server).

Faults through the simulator in front of a real server: tests/test_simulator.py.
"""

from __future__ import annotations

import struct

from aurora_backend.simulator import protocol as p


def test_error_response_bytes_are_postgresqls():
    body = b"SFATAL\0VFATAL\0C57P01\0Mterminating connection due to serverless scale event timeout\0\0"
    assert p.fatal(p.SCALE_EVENT) == b"E" + struct.pack("!I", len(body) + 4) + body
    assert p.error_response("57P03", "the database system is starting up") == (
        b"E\x00\x00\x00\x3eSFATAL\0VFATAL\0C57P03\0Mthe database system is starting up\0\0"
    )


def test_framer_finds_every_boundary_whatever_the_chunking():
    stream = b"".join(b"D" + struct.pack("!I", 4 + n) + b"x" * n for n in (0, 1, 3, 7, 300))
    ends = set()
    pos = 0
    while pos < len(stream):
        pos += 1 + struct.unpack_from("!I", stream, pos + 1)[0]
        ends.add(pos)
    for size in range(1, 12):
        framer = p.Framer()
        for start in range(0, len(stream), size):
            chunk = stream[start : start + size]
            cut = framer.first_boundary(chunk)
            expected = min((e - start for e in ends if start < e <= start + len(chunk)), default=-1)
            assert cut == expected or (cut == 0 and framer.at_boundary)
            framer.feed(chunk)
            assert framer.at_boundary == (start + len(chunk) in ends)
