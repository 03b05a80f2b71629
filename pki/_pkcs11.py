"""CA keys held in a PKCS#11 token (an HSM, or SoftHSM2 in tests).

A :class:`Pkcs11Token` is one logged-in session on one token; a :class:`Pkcs11Key` is an EC P-256
key pair in that token that signs through it. ``Pkcs11Key`` is an
``ec.EllipticCurvePrivateKey``, so cryptography's certificate, CRL and OCSP builders (and
:class:`~pki.CertificateAuthority`) sign with it unchanged; the private key never leaves the token.

Errors (under :class:`~pki.KeyMaterialError`)::

    KeyMaterialError
    └── TokenKeyUnavailable  token_key_unavailable: module, token, PIN or key label not usable,
                             a label already taken, or an operation that would export the key

Token initialisation (SO PIN, user PIN) is the HSM operator's job, not this module's.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

from cryptography import utils
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature
from pkcs11 import lib as load_library
from pkcs11.constants import Attribute, MechanismFlag, ObjectClass
from pkcs11.exceptions import (
    MultipleObjectsReturned,
    MultipleTokensReturned,
    NoSuchKey,
    NoSuchToken,
    PinIncorrect,
    PinLocked,
    PKCS11Error,
    UserAlreadyLoggedIn,
)
from pkcs11.mechanisms import KeyType, Mechanism
from pkcs11.types import Key, PublicKey, Session, SignMixin, Token
from pkcs11.util.ec import encode_ec_public_key, encode_named_curve_parameters

from pki._errors import KeyMaterialError

if TYPE_CHECKING:
    from pkcs11._pkcs11 import lib as Library


class TokenKeyUnavailable(KeyMaterialError):
    """A key in a PKCS#11 token cannot be reached or used as asked."""

    code: ClassVar[str] = "token_key_unavailable"


def _reason(error: PKCS11Error) -> str:
    # python-pkcs11 raises most token errors with an empty message: the class names the cause.
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


@dataclass(slots=True)
class _Module:
    library: Library
    # python-pkcs11 calls C_Initialize with no arguments, which promises the module that calls
    # never overlap (PKCS#11 5.4): all calls into one module go through this lock.
    lock: threading.RLock
    users: int


# A PKCS#11 module is process-wide state (C_Initialize/C_Finalize), so the count of open tokens
# per module is too. The last token to close finalises the module: that closes any session a
# failed login left behind, and the next open re-reads the module's configuration.
_modules: dict[str, _Module] = {}
_modules_lock = threading.Lock()


def _acquire(module: Path) -> _Module:
    name = str(module)
    with _modules_lock:
        loaded = _modules.get(name)
        if loaded is None:
            if not module.is_file():
                raise TokenKeyUnavailable(f"PKCS#11 module {module}: no such file")
            try:
                library = load_library(name)
            except PKCS11Error as error:
                raise TokenKeyUnavailable(
                    f"PKCS#11 module {module} cannot be loaded or initialised: {_reason(error)}"
                ) from error
            loaded = _modules[name] = _Module(library, threading.RLock(), 0)
        loaded.users += 1
        return loaded


def _release(module: Path) -> None:
    name = str(module)
    with _modules_lock:
        loaded = _modules[name]
        loaded.users -= 1
        if loaded.users == 0:
            del _modules[name]
            try:
                with loaded.lock:
                    loaded.library.finalize()
            except PKCS11Error as error:
                raise TokenKeyUnavailable(
                    f"PKCS#11 module {module} cannot be finalised: {_reason(error)}"
                ) from error


class Pkcs11Token:
    """A logged-in session on the token labelled ``label`` of the PKCS#11 module at ``module``.

    A context manager; :meth:`close` logs out. Open one ``Pkcs11Token`` per token and process
    and share it: PKCS#11 logs a whole process in and out of a token, not one session.

    Raises:
        TokenKeyUnavailable: the module is missing or not a PKCS#11 module, no token (or more
            than one) carries ``label``, or the token refuses the PIN.
    """

    def __init__(self, module: Path, label: str, pin: str) -> None:
        self._module_path = module
        self._label = label
        self._module = _acquire(module)
        try:
            with self._module.lock:
                self._session = self._login(pin)
        except BaseException:
            _release(module)
            raise
        self._closed = False

    def _login(self, pin: str) -> Session:
        where = f"token {self._label!r} of PKCS#11 module {self._module_path}"
        library = self._module.library
        try:
            token: Token = library.get_token(token_label=self._label)
        except NoSuchToken as error:
            raise TokenKeyUnavailable(
                f"PKCS#11 module {self._module_path} has no token labelled {self._label!r}"
                f" (its tokens: {self._token_labels()})"
            ) from error
        except MultipleTokensReturned as error:
            raise TokenKeyUnavailable(f"{where}: more than one token has this label") from error
        except PKCS11Error as error:
            raise TokenKeyUnavailable(f"{where}: {_reason(error)}") from error
        try:
            return token.open(rw=True, user_pin=pin)
        except PinIncorrect as error:
            raise TokenKeyUnavailable(f"{where}: the token rejected the PIN") from error
        except PinLocked as error:
            raise TokenKeyUnavailable(f"{where}: the PIN is locked") from error
        except UserAlreadyLoggedIn as error:
            raise TokenKeyUnavailable(
                f"{where}: already open in this process; share one Pkcs11Token"
            ) from error
        except PKCS11Error as error:
            raise TokenKeyUnavailable(f"{where}: login failed: {_reason(error)}") from error

    def _token_labels(self) -> str:
        try:
            labels = sorted(t.label for t in self._module.library.get_tokens() if t.label)
        except PKCS11Error as error:
            return f"unknown, {_reason(error)}"
        return ", ".join(map(repr, labels)) or "none"

    @property
    def label(self) -> str:
        """The token's label."""
        return self._label

    @property
    def module(self) -> Path:
        """The path of the PKCS#11 module the token belongs to."""
        return self._module_path

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._closed

    @contextlib.contextmanager
    def _session_held(self) -> Iterator[Session]:
        # The session, with the module's lock held for the calls made on it.
        with self._module.lock:
            if self._closed:
                raise TokenKeyUnavailable(f"token {self._label!r} is closed")
            yield self._session

    def close(self) -> None:
        """Log out and close the session; closing twice does nothing."""
        if self._closed:
            return
        self._closed = True
        try:
            with self._module.lock:
                self._session.close()
        except PKCS11Error as error:
            raise TokenKeyUnavailable(
                f"token {self._label!r}: closing the session failed: {_reason(error)}"
            ) from error
        finally:
            _release(self._module_path)

    def __enter__(self) -> Pkcs11Token:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Pkcs11Token {self._label!r} of {self._module_path} ({state})>"


def _key_pair(private: Key, public: Key, where: str) -> tuple[SignMixin, ec.EllipticCurvePublicKey]:
    """The private key object to sign with and the public key read from the token."""
    if not isinstance(private, SignMixin) or not isinstance(public, PublicKey):
        raise TokenKeyUnavailable(f"{where}: not a key pair that can sign")
    try:
        key = serialization.load_der_public_key(encode_ec_public_key(public))
    except (PKCS11Error, ValueError) as error:
        raise TokenKeyUnavailable(f"{where}: unreadable public key: {error}") from error
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise TokenKeyUnavailable(f"{where}: not an EC P-256 key")
    return private, key


class Pkcs11Key(ec.EllipticCurvePrivateKey):
    """An EC P-256 private key held in a PKCS#11 token: it signs there and is never exported.

    Get one with :meth:`find` or :meth:`generate`. Signing hashes in Python and has the token
    sign the digest with ``CKM_ECDSA`` (SoftHSM2 offers no ``CKM_ECDSA_SHA256``).
    """

    def __init__(
        self,
        token: Pkcs11Token,
        label: str,
        private: SignMixin,
        public: ec.EllipticCurvePublicKey,
    ) -> None:
        self._token = token
        self._label = label
        self._private = private
        self._public = public

    @staticmethod
    def find(token: Pkcs11Token, label: str) -> Pkcs11Key:
        """The EC key pair labelled ``label`` in ``token``.

        Raises:
            TokenKeyUnavailable: no such key, more than one, no matching public key object,
                or not an EC P-256 key.
        """
        where = f"key {label!r} in token {token.label!r}"
        with token._session_held() as session:
            try:
                private = session.get_key(ObjectClass.PRIVATE_KEY, KeyType.EC, label)
                public = session.get_key(ObjectClass.PUBLIC_KEY, KeyType.EC, label, id=private.id)
            except NoSuchKey as error:
                raise TokenKeyUnavailable(f"{where}: no such EC key pair") from error
            except MultipleObjectsReturned as error:
                raise TokenKeyUnavailable(
                    f"{where}: more than one key has this label; labels must be unique"
                ) from error
            except PKCS11Error as error:
                raise TokenKeyUnavailable(f"{where}: {_reason(error)}") from error
            return Pkcs11Key(token, label, *_key_pair(private, public, where))

    @staticmethod
    def generate(token: Pkcs11Token, label: str) -> Pkcs11Key:
        """A new EC P-256 key pair generated in ``token``, stored there under ``label``.

        The private key is sensitive and not extractable: it can sign and nothing else.

        Raises:
            TokenKeyUnavailable: an object in the token already has ``label``, or the token
                cannot generate the key.
        """
        where = f"key {label!r} in token {token.label!r}"
        if not label:
            raise TokenKeyUnavailable(f"token {token.label!r}: a key needs a non-empty label")
        with token._session_held() as session:
            try:
                if next(session.get_objects({Attribute.LABEL: label}), None) is not None:
                    raise TokenKeyUnavailable(f"{where}: the label is taken; choose another")
                public, private = session.generate_keypair(
                    KeyType.EC,
                    # A random CKA_ID pairs the two halves even if labels are later reused.
                    id=os.urandom(16),
                    label=label,
                    store=True,
                    capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
                    public_template={
                        Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1"),
                        Attribute.PRIVATE: False,
                    },
                    private_template={
                        Attribute.PRIVATE: True,
                        Attribute.SENSITIVE: True,
                        Attribute.EXTRACTABLE: False,
                    },
                )
            except PKCS11Error as error:
                raise TokenKeyUnavailable(
                    f"{where}: key generation failed: {_reason(error)}"
                ) from error
            return Pkcs11Key(token, label, *_key_pair(private, public, where))

    @property
    def label(self) -> str:
        """The key's label in the token."""
        return self._label

    @property
    def token(self) -> Pkcs11Token:
        """The token that holds the key."""
        return self._token

    @property
    def curve(self) -> ec.EllipticCurve:
        """Always P-256."""
        return ec.SECP256R1()

    @property
    def key_size(self) -> int:
        """256 bits."""
        return 256

    def public_key(self) -> ec.EllipticCurvePublicKey:
        """The public key, as read from the token's public key object."""
        return self._public

    def sign(
        self, data: utils.Buffer, signature_algorithm: ec.EllipticCurveSignatureAlgorithm
    ) -> bytes:
        """A DER-encoded ECDSA signature of ``data`` made in the token.

        Raises:
            TokenKeyUnavailable: not ECDSA, deterministic signing asked for (the token cannot
                promise RFC 6979), or the token failed to sign (e.g. it is closed).
        """
        if not isinstance(signature_algorithm, ec.ECDSA):
            raise TokenKeyUnavailable(f"key {self._label!r}: only ECDSA signatures are possible")
        if signature_algorithm.deterministic_signing:
            raise TokenKeyUnavailable(
                f"key {self._label!r}: the token cannot sign deterministically (RFC 6979)"
            )
        algorithm = signature_algorithm.algorithm
        if isinstance(algorithm, Prehashed):
            digest = bytes(data)
            if len(digest) != algorithm.digest_size:
                raise TokenKeyUnavailable(
                    f"key {self._label!r}: a prehashed digest of {algorithm.digest_size}"
                    f" bytes expected, not {len(digest)}"
                )
        else:
            hasher = hashes.Hash(algorithm)
            hasher.update(data)
            digest = hasher.finalize()
        with self._token._session_held():
            try:
                raw = self._private.sign(digest, mechanism=Mechanism.ECDSA)
            except PKCS11Error as error:
                raise TokenKeyUnavailable(
                    f"key {self._label!r} in token {self._token.label!r}: signing failed:"
                    f" {_reason(error)}"
                ) from error
        # The token returns r || s, each as wide as the curve's order; X.509 wants DER.
        half = len(raw) // 2
        return encode_dss_signature(
            int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
        )

    def _not_exportable(self, what: str) -> NoReturn:
        raise TokenKeyUnavailable(
            f"key {self._label!r} lives in token {self._token.label!r}: {what} is not possible"
        )

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> NoReturn:
        """Refused: a token key here signs and does nothing else.

        Raises:
            TokenKeyUnavailable: always.
        """
        self._not_exportable("key agreement (ECDH)")

    def private_numbers(self) -> NoReturn:
        """Refused: the private scalar never leaves the token.

        Raises:
            TokenKeyUnavailable: always.
        """
        self._not_exportable("reading the private numbers")

    def private_bytes(
        self,
        encoding: serialization.Encoding,
        format: serialization.PrivateFormat,
        encryption_algorithm: serialization.KeySerializationEncryption,
    ) -> NoReturn:
        """Refused: the private key never leaves the token.

        Raises:
            TokenKeyUnavailable: always.
        """
        self._not_exportable("serialising the private key")

    def __copy__(self) -> Pkcs11Key:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Pkcs11Key:
        # A copy could only name the same object in the same token.
        return self

    def __repr__(self) -> str:
        return f"<Pkcs11Key {self._label!r} in token {self._token.label!r}>"
