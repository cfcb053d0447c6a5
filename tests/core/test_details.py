"""Smaller behaviours of the core: how chunks are fed, error mapping, reprs."""

from __future__ import annotations

import pytest

import beanproto as bp


def test_bytes_like_data_is_accepted_and_copied() -> None:
    conn = bp.Connection()
    conn.send(bp.Put(b"x"))
    data = bytearray(b"INSERTED 7\r\n")
    conn.receive_data(data)  # type: ignore[arg-type]
    data[:] = b"garbage!!!!!"
    conn.receive_data(memoryview(b""))  # type: ignore[arg-type]  # b"" is EOF...
    assert conn.next_event() == bp.Inserted(7)
    assert conn.next_event() == bp.ConnectionClosed()


def test_chunks_fed_before_reading_are_all_parsed() -> None:
    conn = bp.Connection()
    for _ in range(3):
        conn.send(bp.Delete(1))
    conn.receive_data(b"DELETED\r\n")
    conn.receive_data(b"NOT_FOUND\r\n")
    conn.receive_data(b"DEL")
    conn.receive_data(b"ETED\r\n")
    assert conn.buffered == len(b"DELETED\r\nNOT_FOUND\r\nDELETED\r\n")
    events = [conn.next_event() for _ in range(4)]
    assert events == [bp.Deleted(), bp.NotFound(), bp.Deleted(), bp.NEED_DATA]
    assert conn.buffered == 0


def test_pending_shrinks_as_pipelined_replies_are_read() -> None:
    conn = bp.Connection()
    n = 5000
    for _ in range(n):
        conn.send(bp.Put(b"x"))
    stream = b"".join(b"INSERTED %d\r\n" % i for i in range(n))
    answered = 0
    for start in range(0, len(stream), 4096):
        conn.receive_data(stream[start : start + 4096])
        while (event := conn.next_event()) is not bp.NEED_DATA:
            assert event == bp.Inserted(answered)
            answered += 1
        assert len(conn.pending) == n - answered
    assert answered == n and conn.pending == ()


@pytest.mark.parametrize(
    ("event", "error"),
    [
        (bp.NotFound(), bp.NotFoundError),
        (bp.TimedOut(), bp.TimedOutError),
        (bp.DeadlineSoon(), bp.DeadlineSoonError),
        (bp.NotIgnored(), bp.NotIgnoredError),
        (bp.ExpectedCrlf(), bp.ExpectedCrlfError),
        (bp.JobTooBig(), bp.JobTooBigError),
        (bp.Draining(), bp.DrainingError),
        (bp.BadFormat(), bp.BadFormatError),
        (bp.UnknownCommand(), bp.UnknownCommandError),
        (bp.OutOfMemory(), bp.OutOfMemoryError),
        (bp.InternalError(), bp.InternalServerError),
        (bp.ConnectionClosed(), bp.BrokenConnectionError),
        (bp.Inserted(1), bp.RemoteProtocolError),
    ],
)
def test_error_for_event(event: bp.Event, error: type[bp.Error]) -> None:
    exc = bp.error_for_event(event)
    assert type(exc) is error
    if isinstance(exc, bp.CommandError):
        assert exc.reply == type(exc).reply != ""
        assert str(exc) == exc.reply
        assert exc.outcomes is None


def test_buried_error_carries_the_id() -> None:
    exc = bp.error_for_event(bp.Buried(12))
    assert isinstance(exc, bp.BuriedError) and exc.id == 12
    assert "12" in str(exc)
    bare = bp.error_for_event(bp.Buried())
    assert isinstance(bare, bp.BuriedError) and bare.id is None


def test_reprs_do_not_leak_bodies() -> None:
    job = bp.Job(3, b"secret payload")
    assert "secret" not in repr(job) and "14 bytes" in repr(job)
    # A serializer's loads may give anything, with or without a length.
    assert repr(bp.Job(4, {"to": "secret"})) == "Job(id=4, body=<dict>)"
    assert repr(bp.Job(5, 42)) == "Job(id=5, body=<int>)"
    conn = bp.Connection()
    conn.send(bp.Put(b"secret"))
    assert repr(conn) == "<beanproto.Connection open, 1 replies owed, using 'default'>"
    assert repr(bp.NEED_DATA) == str(bp.NEED_DATA) == "NEED_DATA"


def test_connection_limits_are_checked() -> None:
    with pytest.raises(TypeError):
        bp.Connection(max_line_size="224")  # type: ignore[arg-type]
    with pytest.raises(bp.InvalidArgument):
        bp.Connection(max_line_size=100)
    with pytest.raises(bp.InvalidArgument):
        bp.Connection(max_body_size=-1)
    conn = bp.Connection(max_line_size=300, max_body_size=10)
    assert (conn.max_line_size, conn.max_body_size) == (300, 10)


def test_send_failed_after_a_clean_close_keeps_it_closed() -> None:
    conn = bp.Connection()
    conn.receive_data(b"")
    assert conn.next_event() == bp.ConnectionClosed()
    conn.send_failed()
    assert conn.state is bp.State.CLOSED
    conn2 = bp.Connection()
    conn2.send_failed()
    assert conn2.state is bp.State.BROKEN
    with pytest.raises(bp.LocalProtocolError, match="send_failed"):
        conn2.next_event()


def test_watch_list_from_a_reply_whose_body_arrives_in_pieces() -> None:
    conn = bp.Connection()
    conn.send(bp.ListTubesWatched())
    conn.receive_data(b"OK 18\r\n---\n- default")
    assert conn.next_event() is bp.NEED_DATA
    conn.receive_data(b"\n- a\n\r\n")
    assert conn.next_event() == bp.TubeList(("default", "a"))
    assert conn.watched_tubes == ("default", "a")


def test_max_command_size_refuses_longer_lines_before_anything_changes() -> None:
    name = "t" * 200
    assert bp.Connection().max_command_size == bp.MAX_LINE_SIZE == 224
    assert bp.Connection().send(bp.Ignore(name)) == b"ignore " + name.encode() + b"\r\n"
    conn = bp.Connection(max_command_size=bp.MAX_LINE_SIZE_1_10)
    assert conn.max_command_size == 208
    for command in (bp.Ignore(name), bp.StatsTube(name), bp.PauseTube(name, 0), bp.Use(name)):
        with pytest.raises(bp.InvalidArgument, match="max_command_size=208"):
            conn.send(command)
    assert conn.pending == () and conn.state is bp.State.OPEN
    # What fits: a 208-byte watch line, a use whose USING reply fits with its NUL,
    # and a put of any size (only its line counts, and that is short).
    assert len(conn.send(bp.Watch(name))) == 208
    assert len(conn.send(bp.Use(name[:199]))) == 205
    conn.send(bp.Put(b"x" * 1000))
    assert len(conn.pending) == 3


@pytest.mark.parametrize(
    ("value", "error"),
    [(True, TypeError), ("208", TypeError), (63, bp.InvalidArgument), (225, bp.InvalidArgument)],
)
def test_max_command_size_is_checked(value: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        bp.Connection(max_command_size=value)
    assert bp.Connection(max_command_size=64).max_command_size == 64
