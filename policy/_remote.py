"""The remote engine: a real OPA server (``opa run --server``, usually a sidecar), asked through
its REST Data API with ``opa-python-client``.

Each decision is one ``POST /v1/data/pintu/authz/decision`` with the input, bounded by a timeout
and never retried (a retry would wait past the exchange's own deadline). Over HTTPS the server's
certificate must chain to the federation's roots (not the machine's public CAs), and a client
certificate may be presented. Anything but a decision in time — the server down, slow, answering
an HTTP error or garbage, an undefined result — is a :class:`PolicyError`.
"""

from __future__ import annotations

import asyncio
import ssl
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from opa_client import AsyncOpaClient

from policy._errors import PolicyError
from policy._model import Decision, PolicyInput, parse_decision

PACKAGE = "pintu.authz"
RULE = "decision"


class _FederationOpaClient(AsyncOpaClient):  # type: ignore[misc]
    """opa-python-client's async client with a TLS context of ours (the federation's roots)."""

    def __init__(self, *args: Any, context: ssl.SSLContext | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._context = context

    async def _init_session(self) -> None:
        self._connector = aiohttp.TCPConnector(ssl=self._context if self._context else False)
        self._session = aiohttp.ClientSession(
            headers=self.headers,
            connector=self._connector,
            timeout=aiohttp.ClientTimeout(total=self.timeout),
        )


def _tls_context(
    roots: Path | None, client_certificate: tuple[Path, Path] | None
) -> ssl.SSLContext | None:
    """The TLS context trusting ``roots`` only (PolicyError: unusable files)."""
    if roots is None:
        if client_certificate is not None:
            raise PolicyError("a client certificate needs HTTPS: give the roots too")
        return None
    try:
        context = ssl.create_default_context(cafile=str(roots))
        if client_certificate is not None:
            context.load_cert_chain(*(str(p) for p in client_certificate))
    except (OSError, ssl.SSLError) as error:
        raise PolicyError(f"OPA's TLS settings cannot be used: {error}") from None
    return context


class RemoteOpaEngine:
    """Decides through an OPA server at ``host:port``.

    Args:
        roots: PEM file of the roots the server's TLS certificate must chain to (HTTPS); None
            for plain HTTP on a loopback sidecar.
        client_certificate: (certificate PEM file, key PEM file) to present over HTTPS.
        timeout: seconds a decision may take, everything included.
        revision: what decisions name as the policy revision (the bundle the server runs).
            Pintu cannot see the sidecar load new policies: do not put a decision cache in
            front of this engine unless the revision changes with them.

    Raises:
        PolicyError: unusable TLS settings (files missing or not PEM), a timeout that is not
            positive.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        roots: Path | None = None,
        client_certificate: tuple[Path, Path] | None = None,
        timeout: float = 0.5,
        revision: str = "opa",
    ) -> None:
        if timeout <= 0:
            raise PolicyError("the OPA timeout must be positive")
        self._timeout = timeout
        self._revision = revision
        context = _tls_context(roots, client_certificate)
        self._client = _FederationOpaClient(
            host=host,
            port=port,
            ssl=context is not None,
            retries=0,
            timeout=timeout,
            context=context,
        )
        self._started = False

    @property
    def revision(self) -> str:
        """The revision decisions name (given at construction)."""
        return self._revision

    async def close(self) -> None:
        """Close the connections to the server."""
        await self._client.close_connection()
        self._started = False

    async def decide(self, policy_input: PolicyInput) -> Decision:
        """Ask the server (see the module docstring).

        Raises:
            PolicyError: no decision from the server in time.
        """
        document = policy_input.to_json()
        if not self._started:
            await self._client._init_session()
            self._started = True
        try:
            answer = await asyncio.wait_for(
                self._client.query_rule(document, PACKAGE, RULE), self._timeout
            )
        except TimeoutError:
            raise PolicyError(f"OPA did not answer within {self._timeout:g} s") from None
        except (aiohttp.ContentTypeError, ValueError) as error:
            # A body that is not JSON (ContentTypeError is a ClientResponseError: first).
            raise PolicyError(f"OPA answered something that is not JSON: {error}") from None
        except aiohttp.ClientResponseError as error:
            raise PolicyError(f"OPA answered HTTP {error.status}: {error.message}") from None
        except (aiohttp.ClientError, OSError) as error:
            raise PolicyError(f"OPA could not be asked: {type(error).__name__}: {error}") from None
        if not isinstance(answer, dict):
            raise PolicyError(f"OPA answered something that is not a response: {answer!r:.200}")
        if "result" not in answer:
            raise PolicyError("the policy's decision is undefined for this input (OPA)")
        decision_id = answer.get("decision_id")
        return parse_decision(
            answer["result"],
            decision_id=decision_id if isinstance(decision_id, str) else str(uuid.uuid4()),
            revision=self._revision,
        )
