#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target into corpus/<target>/.

Run from tests/fuzz: `python3 seeds/make_seeds.py` (needs the `cryptography`
package for Ed25519). The files are committed; rerun only to change them.
Code and place tokens are signed with the fuzzing key (seed [7; 32]) the
`code_tokens` target publishes, JWT claims are signed by the `jwt` target
itself, and store records carry placeholder hashes that `store_format`
fixes up when it replays.
"""
import hashlib, os, struct, zlib, uuid
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives import serialization

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "..", "corpus")


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# --- minimal CBOR -----------------------------------------------------------
def head(major, n):
    if n < 24:
        return bytes([major << 5 | n])
    for info, fmt in ((24, ">B"), (25, ">H"), (26, ">I"), (27, ">Q")):
        if n < 1 << (8 * struct.calcsize(fmt)):
            return bytes([major << 5 | info]) + struct.pack(fmt, n)
    raise ValueError(n)


def cbor(v):
    if isinstance(v, bool):
        return b"\xf5" if v else b"\xf4"
    if isinstance(v, int):
        return head(0, v) if v >= 0 else head(1, -1 - v)
    if isinstance(v, bytes):
        return head(2, len(v)) + v
    if isinstance(v, str):
        b = v.encode()
        return head(3, len(b)) + b
    if isinstance(v, list):
        return head(4, len(v)) + b"".join(cbor(x) for x in v)
    if isinstance(v, dict):
        return head(5, len(v)) + b"".join(cbor(k) + cbor(x) for k, x in v.items())
    raise TypeError(v)


def tag(n, body):
    return head(6, n) + body


# --- code and place tokens --------------------------------------------------
KEY = Ed25519PrivateKey.from_private_bytes(bytes([7] * 32))
PUB = KEY.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
KID = ("11-" + hashlib.sha256(PUB).hexdigest()[:16]).encode()
B45 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"


def b45(data):
    out = []
    for i in range(0, len(data), 2):
        chunk = data[i:i + 2]
        if len(chunk) == 2:
            n, digits = chunk[0] * 256 + chunk[1], 3
        else:
            n, digits = chunk[0], 2
        for _ in range(digits):
            out.append(B45[n % 45])
            n //= 45
    return "".join(out)


def sign(payload, kid=KID):
    protected = cbor({1: -8, 4: kid})
    to_sign = cbor(["Signature1", protected, b"", payload])
    sig = KEY.sign(to_sign)
    return tag(18, cbor([protected, {}, payload, sig]))


ISSUED, EXPIRES = 1592049600, 1592050200  # 2020-06-13 12:00 and 12:10 UTC
code = cbor({0: "hc", 1: uuid.UUID(int=42).bytes, 2: "green", 3: "11",
             4: ISSUED, 5: EXPIRES, 6: ISSUED - 97200})
red = cbor({0: "hc", 1: uuid.UUID(int=43).bytes, 2: "red", 3: "110106",
            4: ISSUED, 5: EXPIRES})
place = cbor({0: "place", 1: uuid.UUID(int=7).bytes, 3: "110106018002", 4: ISSUED})
foreign_place = cbor({0: "place", 1: uuid.UUID(int=8).bytes, 3: "310101", 4: ISSUED})
bad_time = cbor({0: "hc", 1: uuid.UUID(int=44).bytes, 2: "yellow", 3: "11",
                 4: 2**62, 5: -2**62})

T = "code_tokens"
write(T, "text-code", b"\x00" + ("HC1:" + b45(sign(code))).encode())
write(T, "text-place", b"\x00" + ("HP1:" + b45(sign(place))).encode())
write(T, "text-not-base45", b"\x00HC1:hello world!")
write(T, "text-no-prefix", b"\x00" + b45(b"just bytes").encode())
write(T, "text-over-ffff", b"\x00HC1:GGW")
write(T, "cose-code", b"\x01" + sign(code))
write(T, "cose-red-subregion", b"\x01" + sign(red))
write(T, "cose-place", b"\x01" + sign(place))
write(T, "cose-unknown-kid", b"\x01" + sign(code, kid=b"31-0000000000000000"))
write(T, "cose-truncated", b"\x01" + sign(code)[:-10])
write(T, "payload-code", b"\x02" + code)
write(T, "payload-place", b"\x02" + place)
write(T, "payload-foreign-place", b"\x02" + foreign_place)
write(T, "payload-huge-times", b"\x02" + bad_time)
write(T, "payload-not-a-map", b"\x02" + cbor([1, 2, 3]))

# --- JWTs ---------------------------------------------------------------------
T = "jwt"
write(T, "header-garbage", b"\x00Bearer not.a.jwt")
write(T, "header-basic", b"\x00Basic dXNlcjpwYXNz")
write(T, "header-alg-none",
      b"\x00Bearer eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ4Iiwicm9sZSI6ImFkbWluIiwiZXhwIjo5OTk5OTk5OTk5fQ.")
write(T, "claims-citizen",
      b'\x01{"sub":"0190a8f2-7c1e-7d3a-9b1f-2c3d4e5f6a7b","role":"citizen","exp":SOON,"iat":PAST}')
write(T, "claims-official",
      b'\x01{"sub":"official-1","role":"health_official","region":"110106","sub_regions":["110106018"],"exp":SOON}')
write(T, "claims-department",
      b'\x01{"sub":"transport","role":"department","region":"11","name":"Transport","exp":SOON}')
write(T, "claims-bad-region",
      b'\x01{"sub":"o","role":"health_official","region":"999999","exp":SOON}')
write(T, "claims-expired", b'\x01{"sub":"a","role":"admin","exp":PAST}')
write(T, "claims-forever", b'\x01{"sub":"a","role":"admin","exp":1099511627776}')
write(T, "claims-nbf", b'\x01{"sub":"a","role":"auditor","exp":SOON,"nbf":SOON}')
write(T, "claims-unknown-role", b'\x01{"sub":"a","role":"root","exp":SOON}')
write(T, "claims-not-json", b"\x01{\"sub\":")
write(T, "header-and-claims-rs256",
      b'\x02{"alg":"RS256","typ":"JWT","kid":"k1"}\x00{"sub":"a","role":"admin","exp":SOON}')
write(T, "header-and-claims-hs256",
      b'\x02{"alg":"HS256"}\x00{"sub":"0190a8f2-7c1e-7d3a-9b1f-2c3d4e5f6a7b","role":"checkpoint","exp":SOON}')

# --- GraphQL documents ----------------------------------------------------------
T = "graphql_shape"


def fan_out(levels):
    q = "query { ...F0 }"
    for i in range(levels):
        q += " fragment F%d on Query { ...F%d ...F%d }" % (i, i + 1, i + 1)
    return q + " fragment F%d on Query { whoami { id } }" % levels


write(T, "whoami", "{ whoami { id role } }")
write(T, "fan-out-26", fan_out(26))
write(T, "fan-out-5", fan_out(5))
write(T, "cycle", "{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }")
write(T, "unknown-fragment", "{ ...Missing }")
write(T, "deep", "query { a { b { c { d { e { f { g { h { i { j { k } } } } } } } } } } }")
write(T, "introspection",
      "query IntrospectionQuery { __schema { queryType { name } types { name kind fields(includeDeprecated: true) "
      "{ name args { name type { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } } }")
write(T, "mutation-with-variables",
      'mutation($id: ID!) @x { recordTestResult(personId: $id, kind: NUCLEIC_ACID, result: POSITIVE, lab: "L") '
      "{ position colour ... on CommandResult { events } } }")
write(T, "multiple-operations",
      "query A { whoami { id } } query B { ...F } subscription C { colourChanged { colour } } "
      "fragment F on Query { logHead { position } }")
write(T, "aliases", "{ " + " ".join("a%d: whoami { id }" % i for i in range(40)) + " }")
write(T, "comment-then-mutation", "#x\nmutation { generateCode { text } }")
write(T, "syntax-error", "{ whoami { id }")

# --- the store's on-disk format -------------------------------------------------
T = "store_format"


def stored_event(revision, stream, etype, data, metadata, ident):
    header = struct.pack("<Qq", revision, 1_592_049_600_000_000) + b"\x00" * 32
    body = ident + struct.pack("<IIII", len(stream), len(etype), len(data), len(metadata))
    return header + body + stream + etype + data + metadata


def entries(events, first=0):
    out = b""
    for i, e in enumerate(events):
        out += struct.pack("<QI", first + i, len(e)) + e
    return out


def record(payload, magic=b"TBW2"):
    return magic + struct.pack("<II", len(payload), zlib.crc32(payload)) + payload


e0 = stored_event(0, b"person-0190a8f2-7c1e-7d3a-9b1f-2c3d4e5f6a7b", b"PersonRegistered.v1",
                  b'{"home":"11"}', b'{"actor":"a"}', uuid.UUID(int=1).bytes)
e1 = stored_event(1, b"person-0190a8f2-7c1e-7d3a-9b1f-2c3d4e5f6a7b", b"HealthDeclared.v1",
                  b'{"t":36.6}', b"{}", uuid.UUID(int=2).bytes)
e2 = stored_event(0, b"$$person-0190a8f2-7c1e-7d3a-9b1f-2c3d4e5f6a7b", b"$metadata",
                  b'{"$maxCount":1,"$tb":1}', b"{}", uuid.UUID(int=3).bytes)
e3 = stored_event(2, b"person-0190a8f2-7c1e-7d3a-9b1f-2c3d4e5f6a7b", b"$tombstone",
                  b"", b"", uuid.UUID(int=4).bytes)
wal = record(entries([e0, e1])) + record(entries([e2, e3], first=2))
write(T, "wal-replay", b"\x01" + wal)
write(T, "wal-decode", b"\x00" + wal)
write(T, "wal-torn-tail", b"\x01" + wal + b"TBW2\x10\x00\x00\x00")
write(T, "wal-v1", b"\x01" + record(entries([e0]), magic=b"TBW1"))
write(T, "wal-bad-crc", b"\x01" + wal[:-1] + bytes([wal[-1] ^ 0xFF]))
write(T, "chunk", b"\x00" + entries([e0, e1], first=5))
write(T, "stored-event", b"\x00" + e1)
write(T, "stream-state", b"\x00\x01\x07\x00\x01\x04\x7b\x7d\x20\x20")
