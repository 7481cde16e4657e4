"""Venue-session test plumbing shared by the one-pass decoding tests."""

from __future__ import annotations

from arbwire.venues.base import VenueSession


def count_fallbacks(session: VenueSession) -> list[bytes]:
    """Make ``session`` record every frame its one-pass typed decode hands to the
    two-step path (its ``_two_step``); returns the list that fills."""
    fallbacks: list[bytes] = []
    two_step = session._two_step  # type: ignore[attr-defined]

    def counting(payload: bytes, recv_ns: int):  # type: ignore[no-untyped-def]
        fallbacks.append(payload)
        return two_step(payload, recv_ns)

    session._two_step = counting  # type: ignore[attr-defined]
    return fallbacks


def events_like_two_step(typed: VenueSession, reference: VenueSession, frames: list[bytes]) -> int:
    """Feed ``frames`` to ``typed`` and to ``reference``'s two-step path, asserting the same
    events frame by frame; returns how many events there were."""
    events = 0
    for i, frame in enumerate(frames):
        got = typed.on_frame(frame, i)
        assert got == reference._two_step(frame, i), frame[:120]  # type: ignore[attr-defined]
        events += len(got)
    return events
