#!/usr/bin/python3
"""Read Vantage's placement decisions from Redis (schema 1, codecs 1 and 2).

The layout is specified byte for byte in storage/DECISIONS.md. This module needs only the standard library
to decode, and Debian's python3-redis to read Redis:

    python3 vantage_decisions.py --redis 127.0.0.1:6379             # every decision, one JSON object a line
    python3 vantage_decisions.py --redis 127.0.0.1:6379 --app api   # one (repeatable)

Times are integer Unix nanoseconds, None (null) when not set. A value that does not decode is reported on
stderr and skipped; the exit status is then 1.
"""

import argparse
import json
import struct
import sys

SCHEMA_KEY = "vantage:{meta}:schema"
SCHEMA_VERSION = b"1"
DECISION_BUCKETS = 64
CHANNEL = "vantage:decisions"
CODECS = (1, 2)  # the payload codecs this reader knows
MAX_CANDIDATES = 4096


class DecodeError(ValueError):
    """A stored value that is not a decision this reader can decode."""


def fnv1a32(data):
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def bucket(app):
    """The bucket (0..63) of an application's decision."""
    return fnv1a32(app.encode()) % DECISION_BUCKETS


def decisions_key(b):
    return "vantage:{d:%02d}:decisions" % b


def fences_key(b):
    return "vantage:{d:%02d}:fences" % b


def fingerprint(d):
    """The hexadecimal fingerprint the writer stores beside a decision (see DECISIONS.md)."""
    data = b"".join(d[k].encode() + b"\0" for k in ("mode", "target", "best_pop", "verdict", "status"))
    data += b"".join(c["pop"].encode() + b"\1" for c in d["candidates"])
    return "%x" % fnv1a64(data)


class _Reader:
    def __init__(self, data):
        self.b = data
        self.i = 0

    def byte(self):
        if self.i >= len(self.b):
            raise DecodeError("truncated at byte %d" % self.i)
        c = self.b[self.i]
        self.i += 1
        return c

    def uvarint(self):
        v = shift = 0
        for _ in range(10):
            c = self.byte()
            v |= (c & 0x7F) << shift
            if c < 0x80:
                return v & 0xFFFFFFFFFFFFFFFF
            shift += 7
        raise DecodeError("varint longer than 10 bytes at byte %d" % self.i)

    def varint(self):
        u = self.uvarint()
        return (u >> 1) ^ -(u & 1)

    def double(self):
        if self.i + 8 > len(self.b):
            raise DecodeError("truncated double at byte %d" % self.i)
        (v,) = struct.unpack_from("<d", self.b, self.i)
        self.i += 8
        return v

    def string(self):
        n = self.uvarint()
        if self.i + n > len(self.b):
            raise DecodeError("string of %d bytes past the end at byte %d" % (n, self.i))
        s = self.b[self.i : self.i + n]
        self.i += n
        return s.decode("utf-8", errors="surrogateescape")

    def time(self):
        n = self.varint()
        return None if n == 0 else n


def decode(value):
    """Decode one stored decision (bytes "<version>|<fingerprint>|<payload>") into a dict."""
    if isinstance(value, str):
        value = value.encode("utf-8", errors="surrogateescape")
    parts = value.split(b"|", 2)
    if len(parts) != 3:
        raise DecodeError("no version|fingerprint| framing")
    ver, fp, payload = parts
    if not ver.isdigit():
        raise DecodeError("version %r is not decimal" % ver[:20])
    r = _Reader(payload)
    codec = r.byte()
    if codec > max(CODECS):
        raise DecodeError("codec %d is newer than this reader knows (%d to %d): upgrade it" % (codec, CODECS[0], CODECS[-1]))
    if codec not in CODECS:
        raise DecodeError("codec %d, want %d to %d" % (codec, CODECS[0], CODECS[-1]))
    d = {"version": int(ver), "fingerprint": fp.decode("ascii", errors="replace"), "codec": codec}
    for k in ("app", "mode", "target", "best_pop", "verdict", "status"):
        d[k] = r.string()
    d["estimated"] = bool(r.byte() & 1)
    d["confidence"] = r.double()
    d["computed_at"] = r.time()
    d["next_recheck"] = r.time()
    n = r.uvarint()
    if n > MAX_CANDIDATES:
        raise DecodeError("%d candidates: at most %d" % (n, MAX_CANDIDATES))
    d["candidates"] = [{"pop": r.string(), "rtt_ms": r.double()} for _ in range(n)]
    d["expires_at"], d["reason"] = None, ""
    if codec >= 2:
        d["expires_at"] = r.time()
        d["reason"] = r.string()
    return d


def _connect(addr, password=None):
    import redis  # Debian: python3-redis

    host, _, port = addr.rpartition(":")
    c = redis.Redis(host=host or "127.0.0.1", port=int(port), password=password, decode_responses=False)
    schema = c.get(SCHEMA_KEY)
    if schema is not None and schema != SCHEMA_VERSION:
        raise SystemExit("vantage_decisions: redis holds schema %r at %s; this reader knows %s"
                         % (schema, SCHEMA_KEY, SCHEMA_VERSION.decode()))
    return c


def _with_fence(c, d):
    """Adds the app's fence: "fence" the token and "fence_lease" the lease name of the last fenced write
    ("<token>:<lease>"; a bare token, written by older versions, has no lease: None)."""
    f = c.hget(fences_key(bucket(d["app"])), d["app"])
    token, lease = None, None
    if f is not None:
        t, sep, l = f.partition(b":")
        token, lease = int(t), (l.decode("utf-8", "replace") if sep else None)
    d["fence"], d["fence_lease"] = token, lease
    return d


def get(c, app):
    """The decision of app, or None when none is stored. Raises DecodeError on a corrupt value."""
    v = c.hget(decisions_key(bucket(app)), app)
    if v is None:
        return None
    d = decode(v)
    if d["app"] != app:
        raise DecodeError("field %r holds the decision of %r" % (app, d["app"]))
    return _with_fence(c, d)


def scan(c, errors):
    """Every stored decision (HVALS of the 64 buckets). Undecodable values are appended to errors."""
    for b in range(DECISION_BUCKETS):
        for v in c.hvals(decisions_key(b)):
            try:
                yield _with_fence(c, decode(v))
            except DecodeError as e:
                errors.append("%s: %s" % (decisions_key(b), e))


def main(argv=None):
    ap = argparse.ArgumentParser(description="Print Vantage's decisions from Redis as JSON lines.")
    ap.add_argument("--redis", default="127.0.0.1:6379", help="host:port of the Redis node")
    ap.add_argument("--password-env", default="VANTAGE_REDIS_PASSWORD",
                    help="environment variable holding the Redis password (default %(default)s)")
    ap.add_argument("--app", action="append", default=[], help="print this application's decision only (repeatable)")
    args = ap.parse_args(argv)
    import os

    c = _connect(args.redis, os.environ.get(args.password_env) or None)
    errors = []
    if args.app:
        for app in args.app:
            try:
                d = get(c, app)
            except DecodeError as e:
                errors.append("%s: %s" % (app, e))
                continue
            if d is not None:
                print(json.dumps(d, sort_keys=True))
    else:
        for d in scan(c, errors):
            print(json.dumps(d, sort_keys=True))
    for e in errors:
        print("vantage_decisions: %s" % e, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
