"""Merkle trees as RFC 9162 defines them: heads, inclusion and consistency proofs, checked
against the RFC's recursive definitions and against every kind of tampering."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit._merkle import (
    EMPTY_ROOT,
    ProofInvalid,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)


def reference_root(leaves: list[bytes]) -> bytes:
    """MTH, written as RFC 9162 section 2.1.1 states it."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node_hash(reference_root(leaves[:k]), reference_root(leaves[k:]))


def leaves(count: int) -> list[bytes]:
    return [leaf_hash(f"record {n}".encode()) for n in range(count)]


def test_leaves_and_nodes_are_hashed_apart() -> None:
    assert leaf_hash(b"x") == hashlib.sha256(b"\x00x").digest()
    assert node_hash(b"a", b"b") == hashlib.sha256(b"\x01ab").digest()
    assert root([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()


@pytest.mark.parametrize("count", range(1, 70))
def test_the_head_is_the_rfcs(count: int) -> None:
    assert root(leaves(count)) == reference_root(leaves(count))


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33])
def test_every_leaf_has_a_proof_that_verifies(count: int) -> None:
    tree = leaves(count)
    head = root(tree)
    for index in range(count):
        verify_inclusion(tree[index], index, count, inclusion_proof(index, tree), head)


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8, 13, 21])
def test_every_prefix_is_consistent_with_the_tree(count: int) -> None:
    tree = leaves(count)
    for first in range(1, count + 1):
        proof = consistency_proof(first, tree)
        verify_consistency(first, count, proof, root(tree[:first]), root(tree))


@settings(max_examples=200, deadline=None)
@given(count=st.integers(2, 40), data=st.data())
def test_a_tampered_inclusion_proof_fails(count: int, data: st.DataObject) -> None:
    tree = leaves(count)
    head = root(tree)
    index = data.draw(st.integers(0, count - 1))
    proof = inclusion_proof(index, tree)
    other = data.draw(st.integers(0, count - 1).filter(lambda n: n != index))
    with pytest.raises(ProofInvalid):
        verify_inclusion(tree[other], index, count, proof, head)  # another record
    with pytest.raises(ProofInvalid):
        verify_inclusion(tree[index], other, count, proof, head)  # another position
    # (Another size with the same root may pass: a path does not fix the size, which is why a
    # checkpoint signs the size and the root together.)
    with pytest.raises(ProofInvalid):
        verify_inclusion(tree[index], index, count, proof, leaf_hash(b"forged"))
    if proof:
        position = data.draw(st.integers(0, len(proof) - 1))
        changed = list(proof)
        changed[position] = leaf_hash(b"changed")
        with pytest.raises(ProofInvalid):
            verify_inclusion(tree[index], index, count, changed, head)
        with pytest.raises(ProofInvalid):
            verify_inclusion(tree[index], index, count, proof[:-1], head)  # cut short
    with pytest.raises(ProofInvalid):
        verify_inclusion(tree[index], index, count, [*proof, head], head)  # too long


@settings(max_examples=200, deadline=None)
@given(count=st.integers(2, 40), data=st.data())
def test_a_rewritten_history_is_not_consistent(count: int, data: st.DataObject) -> None:
    tree = leaves(count)
    first = data.draw(st.integers(1, count - 1))
    proof = consistency_proof(first, tree)
    old_root, new_root = root(tree[:first]), root(tree)
    # The log changed one of the first records after the first head was published.
    changed = list(tree)
    changed[data.draw(st.integers(0, first - 1))] = leaf_hash(b"rewritten")
    with pytest.raises(ProofInvalid):
        verify_consistency(first, count, consistency_proof(first, changed), old_root, root(changed))
    with pytest.raises(ProofInvalid):
        verify_consistency(first, count, proof, old_root, root(changed))
    with pytest.raises(ProofInvalid):
        verify_consistency(first, count, proof, root(changed[:first]), new_root)
    if proof:
        position = data.draw(st.integers(0, len(proof) - 1))
        altered = list(proof)
        altered[position] = leaf_hash(b"altered")
        with pytest.raises(ProofInvalid):
            verify_consistency(first, count, altered, old_root, new_root)


def test_impossible_sizes_are_refused() -> None:
    tree = leaves(4)
    with pytest.raises(ProofInvalid):
        inclusion_proof(4, tree)
    with pytest.raises(ProofInvalid):
        consistency_proof(0, tree)
    with pytest.raises(ProofInvalid):
        consistency_proof(5, tree)
    with pytest.raises(ProofInvalid):
        verify_consistency(3, 2, [], root(tree[:3]), root(tree[:2]))
    with pytest.raises(ProofInvalid):
        verify_consistency(2, 2, [tree[0]], root(tree[:2]), root(tree[:2]))
    verify_consistency(2, 2, [], root(tree[:2]), root(tree[:2]))
    with pytest.raises(ProofInvalid):
        verify_inclusion(tree[0], 0, 0, [], root(tree))
