"""Anti-passback: an entry gate refuses someone recorded inside until they are seen leaving; the
state survives a restart and converges whatever order the area's gates' passages arrive in."""

from __future__ import annotations

import itertools
from pathlib import Path

from edge.access.passback import Passage, PassbackLog


def test_entry_is_refused_until_the_person_is_seen_leaving_and_survives_a_restart(tmp_path: Path) -> None:
    log = PassbackLog(tmp_path / "passback.sqlite3")
    assert log.allows("car-park", "in", "p-1")  # never seen: outside
    assert log.record(Passage("car-park", "p-1", "in", 100.0, "gw-a", 1))
    assert not log.allows("car-park", "in", "p-1")  # the card passed back over the barrier
    assert log.allows("car-park", "out", "p-1")  # leaving is never refused
    assert log.allows("lobby", "in", "p-1")  # another area is its own
    log.close()
    log = PassbackLog(tmp_path / "passback.sqlite3")  # power cut, restart
    assert not log.allows("car-park", "in", "p-1")
    assert log.record(Passage("car-park", "p-1", "out", 200.0, "gw-b", 7))
    assert log.allows("car-park", "in", "p-1")
    assert log.forget("p-1") == 1
    log.close()


def test_every_order_of_arrival_gives_the_same_answer(tmp_path: Path) -> None:
    passages = [
        Passage("car-park", "p-1", "in", 100.0, "gw-a", 1),
        Passage("car-park", "p-1", "out", 150.0, "gw-b", 4),
        Passage("car-park", "p-1", "in", 150.0, "gw-c", 2),  # same second: gate id breaks the tie
        Passage("car-park", "p-1", "out", 90.0, "gw-b", 3),
    ]
    answers = set()
    for i, order in enumerate(itertools.permutations(passages)):
        log = PassbackLog(tmp_path / f"p{i}.sqlite3")
        for passage in order:
            log.record(passage)
        answers.add(log.inside("car-park", "p-1"))
        log.close()
    assert answers == {True}  # the latest passage is gw-c's entry at 150 s
