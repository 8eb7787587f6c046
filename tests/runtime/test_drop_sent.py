"""The channel's backlog after a partial write: what the socket took comes off the front, in
place, and what it did not take stays as given (a big binary is not copied)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pynode.runtime.transport import Buffer, _drop_sent

PIECES = st.lists(st.binary(min_size=0, max_size=40), min_size=1, max_size=8)


@settings(max_examples=300, deadline=None)
@given(PIECES, st.data())
def test_the_sent_bytes_come_off_the_front_in_place(pieces: list[bytes], data: st.DataObject) -> None:
    whole = b"".join(pieces)
    sent = data.draw(st.integers(0, len(whole)))
    backlog: list[Buffer] = list(pieces)
    same = backlog
    _drop_sent(backlog, sent)
    assert backlog is same  # (the writer's list: _keep appends to it under the same lock)
    assert b"".join(bytes(p) for p in backlog) == whole[sent:]
    # each piece the socket did not touch is the object it was; a cut one is a view of it
    cut = len(pieces) - len(backlog)
    for i, piece in enumerate(backlog):
        original = pieces[cut + i]
        if i == 0 and len(piece) != len(original):
            assert isinstance(piece, memoryview) and piece.obj is original
        else:
            assert piece is original


def test_a_cut_view_is_cut_again_without_a_copy() -> None:
    big = bytes(range(256)) * 64
    backlog: list[Buffer] = [b"head", big, b"tail"]
    _drop_sent(backlog, 4 + 100)
    _drop_sent(backlog, 50)
    assert isinstance(backlog[0], memoryview) and backlog[0].obj is big
    assert bytes(backlog[0]) == big[150:] and backlog[1] == b"tail"
    _drop_sent(backlog, len(big) - 150 + 4)
    assert backlog == []
