"""Signed policy bundles: a policy set as one file an operator can ship to security servers.

A bundle is a gzipped tar in OPA's bundle layout: the ``.rego`` files (tests included), an
optional ``data.json``, a ``.manifest`` (``{"revision": ..., "roots": ["pintu"]}``) and a
``.signatures.json`` (``{"signatures": [JWS]}``). The JWS (compact, ES256) signs the list of
every other file's SHA-256, as OPA's bundle signing does; its ``x5c`` header carries the signing
certificate and its chain. A security server takes a bundle only when that certificate is a
member's signing certificate (document signing), chains to the federation's roots, is valid now,
names the member that owns the security server, and every file matches the signed list — no
file missing, none added. Then it compiles the set and runs its test cases before switching.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import tarfile
import zlib
from collections.abc import Iterable, Mapping

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from pki import JwsInvalid, sign_jws, verify_jws
from policy._engine import PolicySet
from policy._errors import PolicyError
from proto import MemberId

# The keys a bundle can be signed with (ES256).
SIGNING_KEY_TYPES = (ec.EllipticCurvePrivateKey,)
SIGNATURES = ".signatures.json"
MANIFEST = ".manifest"
# A bundle is small: policies and their data. Anything larger is refused before it is read.
MAX_BUNDLE_BYTES = 16 * 1024 * 1024
MAX_FILES = 1_000


class PolicyBundleInvalid(PolicyError):
    """A bundle that must not be used: unreadable, unsigned, signed by someone else, altered."""

    code = "policy_bundle_invalid"


def build_bundle(
    files: Mapping[str, bytes],
    key: ec.EllipticCurvePrivateKey,
    chain: Iterable[x509.Certificate],
    *,
    revision: str,
) -> bytes:
    """A signed bundle of ``files`` (name → content: ``*.rego`` and ``data.json``).

    Raises:
        PolicyError: a key that is not P-256, or a file name a bundle cannot hold.
    """
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise PolicyError("policy bundles are signed with P-256 keys (ES256)")
    contents = dict(files)
    for name in contents:
        _check_name(name)
    contents[MANIFEST] = json.dumps({"revision": revision, "roots": ["pintu"]}).encode()
    payload = {
        "files": [
            {"name": name, "hash": hashlib.sha256(content).hexdigest(), "algorithm": "SHA-256"}
            for name, content in sorted(contents.items())
        ]
    }
    token = sign_jws(json.dumps(payload, separators=(",", ":")).encode(), key, chain)
    contents[SIGNATURES] = json.dumps({"signatures": [token]}).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as archive:
        for name, content in sorted(contents.items()):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mtime = 0
            archive.addfile(info, io.BytesIO(content))
    return out.getvalue()


def _check_name(name: str) -> None:
    parts = name.split("/")
    if (
        not name
        or name.startswith("/")
        or any(part in ("", ".", "..") for part in parts)
        or "\\" in name
        or not (name.endswith(".rego") or name in ("data.json", MANIFEST, SIGNATURES))
    ):
        raise PolicyBundleInvalid(f"the bundle may not hold a file named {name!r}")


def _read(blob: bytes) -> dict[str, bytes]:
    if len(blob) > MAX_BUNDLE_BYTES:
        raise PolicyBundleInvalid(f"the bundle is larger than {MAX_BUNDLE_BYTES} bytes")
    # Decompressed with a hard cap first: tar headers (long names, PAX) are read whole, so a
    # small gzip must not be allowed to unpack into gigabytes before any check.
    try:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        raw = inflater.decompress(blob, MAX_BUNDLE_BYTES + 1)
    except zlib.error as error:
        raise PolicyBundleInvalid(f"the bundle is not a gzipped tar: {error}") from None
    if len(raw) > MAX_BUNDLE_BYTES or inflater.unconsumed_tail:
        raise PolicyBundleInvalid(f"the bundle unpacks to more than {MAX_BUNDLE_BYTES} bytes")
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as archive:
            for count, member in enumerate(archive):
                if count >= MAX_FILES:
                    raise PolicyBundleInvalid(f"the bundle holds more than {MAX_FILES} entries")
                if member.isdir():
                    continue
                if not member.isfile():
                    raise PolicyBundleInvalid(f"the bundle holds {member.name!r}, not a file")
                name = member.name.removeprefix("./")
                _check_name(name)
                if name in files:
                    raise PolicyBundleInvalid(f"the bundle holds {name!r} twice")
                extracted = archive.extractfile(member)
                assert extracted is not None
                files[name] = extracted.read()
    except (tarfile.TarError, OSError, EOFError) as error:
        raise PolicyBundleInvalid(f"the bundle is not a gzipped tar: {error}") from None
    return files


def verify_bundle(
    blob: bytes, roots: Iterable[x509.Certificate], member: MemberId, *, now: dt.datetime
) -> tuple[PolicySet, str]:
    """The policy set in ``blob`` and its manifest revision, once the bundle is verified (see
    the module docstring); the set is not compiled or tested here.

    Raises:
        PolicyBundleInvalid: the bundle must not be used (the message says why).
        PolicyError: the files do not make a policy set.
    """
    files = _read(blob)
    try:
        signatures = json.loads(files.pop(SIGNATURES))["signatures"]
        (token,) = signatures
    except KeyError:
        raise PolicyBundleInvalid("the bundle is not signed (no .signatures.json)") from None
    except (ValueError, TypeError, AttributeError, RecursionError) as error:
        raise PolicyBundleInvalid(
            f"the bundle's signature is malformed: {type(error).__name__}"
        ) from None
    try:
        verified = verify_jws(str(token), roots, now=now, what="the bundle")
        payload = json.loads(verified.payload)
    except JwsInvalid as error:
        raise PolicyBundleInvalid(str(error)) from None
    except (ValueError, RecursionError) as error:
        raise PolicyBundleInvalid(
            f"the bundle's signature is malformed: {type(error).__name__}"
        ) from None
    if verified.signer != member:
        raise PolicyBundleInvalid(f"the bundle is signed by {verified.signer}, not by {member}")
    listed = payload.get("files") if isinstance(payload, dict) else None
    if not isinstance(listed, list) or not all(isinstance(f, dict) for f in listed):
        raise PolicyBundleInvalid("the signed file list is malformed")
    signed = {str(f.get("name")): str(f.get("hash")) for f in listed}
    if set(signed) != set(files):
        missing, added = sorted(set(signed) - set(files)), sorted(set(files) - set(signed))
        raise PolicyBundleInvalid(
            f"the bundle's files differ from the signed list: missing {missing}, not signed {added}"
        )
    for name, content in files.items():
        if hashlib.sha256(content).hexdigest() != signed[name]:
            raise PolicyBundleInvalid(f"{name} was altered after signing")
    try:
        revision = json.loads(files.pop(MANIFEST))["revision"]
    except (KeyError, ValueError, TypeError, RecursionError):
        raise PolicyBundleInvalid("the bundle has no usable .manifest") from None
    if not isinstance(revision, str) or not revision:
        raise PolicyBundleInvalid("the bundle's manifest names no revision")
    return PolicySet.from_files(files, "the bundle"), revision
