"""Merkle trees of audit records, as RFC 9162 (Certificate Transparency 2.0, section 2.1) defines
them: the tree head of a log of records, inclusion proofs (this record is in the tree of that
size) and consistency proofs (the tree of size m is a prefix of the tree of size n), and their
verification.

Leaves are hashed as ``SHA-256(0x00 || record)`` and interior nodes as
``SHA-256(0x01 || left || right)``, so no record can pass for a node. The functions take the
leaf hashes of the whole log; ``verify_*`` need only the proof, the sizes and the hashes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

EMPTY_ROOT = hashlib.sha256(b"").digest()


class ProofInvalid(ValueError):
    """A proof that does not hold (or sizes it cannot be about)."""


def leaf_hash(record: bytes) -> bytes:
    """The leaf hash of one record."""
    return hashlib.sha256(b"\x00" + record).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The hash of an interior node."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(size: int) -> int:
    """The largest power of two smaller than ``size`` (``size`` > 1)."""
    return 1 << ((size - 1).bit_length() - 1)


def root(leaves: Sequence[bytes]) -> bytes:
    """The tree head (MTH) of the leaf hashes ``leaves``."""
    if not leaves:
        return EMPTY_ROOT
    level = list(leaves)
    # Bottom-up: pairing neighbours level by level and carrying an odd last node up unchanged
    # gives the same tree as RFC 9162's split at the largest power of two.
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


# The tree head of the leaves in [start, end) of a larger tree: how proofs read a tree without
# holding all of it (a log answers from stored subtree hashes).
RangeRoot = Callable[[int, int], bytes]


def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """The audit path of leaf ``index`` in the tree of ``leaves`` (ProofInvalid: no such
    leaf)."""
    return inclusion_proof_of(index, len(leaves), lambda start, end: root(leaves[start:end]))


def inclusion_proof_of(index: int, size: int, subtree: RangeRoot) -> list[bytes]:
    """The audit path of leaf ``index`` in the tree of ``size`` leaves whose subtree heads
    ``subtree`` gives (ProofInvalid: no such leaf)."""
    if not 0 <= index < size:
        raise ProofInvalid(f"leaf {index} is not in a tree of size {size}")
    return _path(index, 0, size, subtree)


def _path(index: int, start: int, end: int, subtree: RangeRoot) -> list[bytes]:
    if end - start == 1:
        return []
    middle = start + _split(end - start)
    if index < middle:
        return [*_path(index, start, middle, subtree), subtree(middle, end)]
    return [*_path(index, middle, end, subtree), subtree(start, middle)]


def consistency_proof(first: int, leaves: Sequence[bytes]) -> list[bytes]:
    """The proof that the tree of the first ``first`` leaves is a prefix of the tree of
    ``leaves`` (ProofInvalid: sizes that cannot be compared)."""
    return consistency_proof_of(first, len(leaves), lambda start, end: root(leaves[start:end]))


def consistency_proof_of(first: int, size: int, subtree: RangeRoot) -> list[bytes]:
    """The proof that the tree of the first ``first`` leaves is a prefix of the tree of
    ``size`` leaves whose subtree heads ``subtree`` gives."""
    if not 0 < first <= size:
        raise ProofInvalid(f"no consistency proof from size {first} to size {size}")
    return _subproof(first, 0, size, True, subtree)


def _subproof(first: int, start: int, end: int, whole: bool, subtree: RangeRoot) -> list[bytes]:
    if first == end - start:
        return [] if whole else [subtree(start, end)]
    k = _split(end - start)
    if first <= k:
        return [*_subproof(first, start, start + k, whole, subtree), subtree(start + k, end)]
    return [*_subproof(first - k, start + k, end, False, subtree), subtree(start, start + k)]


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], expected_root: bytes
) -> None:
    """Check that ``leaf`` is leaf ``index`` of the tree of ``size`` with ``expected_root``
    (RFC 9162, 2.1.3.2).

    Raises:
        ProofInvalid: it is not.
    """
    if not 0 <= index < size:
        raise ProofInvalid(f"leaf {index} cannot be in a tree of size {size}")
    fn, sn, hashed = index, size - 1, leaf
    for sibling in proof:
        if sn == 0:
            raise ProofInvalid("the inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            hashed = node_hash(sibling, hashed)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            hashed = node_hash(hashed, sibling)
        fn >>= 1
        sn >>= 1
    if sn != 0 or hashed != expected_root:
        raise ProofInvalid(f"leaf {index} is not in the tree of size {size} with that root")


def verify_consistency(
    first: int, second: int, proof: Sequence[bytes], first_root: bytes, second_root: bytes
) -> None:
    """Check that the tree of size ``first`` with ``first_root`` is a prefix of the tree of
    size ``second`` with ``second_root`` (RFC 9162, 2.1.4.2).

    Raises:
        ProofInvalid: it is not.
    """
    if not 0 < first <= second:
        raise ProofInvalid(f"no consistency from size {first} to size {second}")
    if first == second:
        if proof or first_root != second_root:
            raise ProofInvalid("a tree is consistent only with itself at the same size")
        return
    path = list(proof)
    if first & (first - 1) == 0:  # a power of two: the first tree is a node of the second
        path.insert(0, first_root)
    if not path:
        raise ProofInvalid("the consistency proof is empty")
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    first_hash = second_hash = path[0]
    for node in path[1:]:
        if sn == 0:
            raise ProofInvalid("the consistency proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            first_hash = node_hash(node, first_hash)
            second_hash = node_hash(node, second_hash)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            second_hash = node_hash(second_hash, node)
        fn >>= 1
        sn >>= 1
    if sn != 0 or first_hash != first_root or second_hash != second_root:
        raise ProofInvalid(f"the tree of size {first} is not a prefix of the tree of size {second}")
