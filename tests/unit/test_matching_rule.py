"""The event-wide matching rule on its own: plain vectors in, verdicts out (no database, no engine).

Faces are points of a plane inside the 128-d descriptor space, so every distance is plain to read.
"""

from __future__ import annotations

import numpy as np

from snapmatch.matching_rule import (
    Attendee,
    MatchRule,
    ProviderRule,
    Verdict,
    decide,
    decide_provider_hits,
    group_labels,
    photo_verdicts,
)

RULE = MatchRule()


def at(x: float, y: float = 0.0) -> np.ndarray:
    v = np.zeros(128, np.float32)
    v[0], v[1] = x, y
    return v


def run(faces: list[np.ndarray], attendees: dict[int, Attendee], widths: list[float] | None = None):  # type: ignore[no-untyped-def]
    descriptors = np.stack(faces)
    photo_ids = list(range(100, 100 + len(faces)))  # one face per photo
    widths = widths or [120.0] * len(faces)
    groups = group_labels(descriptors, photo_ids, widths, RULE)
    decisions = decide(descriptors, photo_ids, widths, groups, attendees, RULE)
    return {(d.attendee, photo_ids[d.face]): d.verdict for d in decisions}


def me(*points: np.ndarray, **kw) -> Attendee:  # type: ignore[no-untyped-def]
    return Attendee(np.stack(points), **kw)


def test_a_close_face_is_sure_and_a_borderline_lone_face_is_only_maybe() -> None:
    verdicts = run([at(0.3), at(0, 0.56), at(0, -0.7)], {1: me(at(0))})
    assert verdicts == {(1, 100): Verdict.SURE, (1, 101): Verdict.MAYBE}


def test_a_face_belongs_to_one_attendee_the_closest_and_only_with_a_clear_margin() -> None:
    attendees = {1: me(at(0)), 2: me(at(0.45))}
    verdicts = run([at(0.1, 0.0), at(0.224, 0.55)], attendees)
    # the second is about as close to both: nobody's for sure, offered to the closest only
    assert verdicts == {(1, 100): Verdict.SURE, (1, 101): Verdict.MAYBE}


def test_a_far_photo_joins_through_a_tight_group_of_the_attendees_own_photos() -> None:
    verdicts = run([at(0.3), at(0.4), at(0.65)], {1: me(at(0))})
    assert verdicts[(1, 102)] is Verdict.SURE  # 0.65 from the selfie: the DIY rule would miss it


def test_a_strangers_group_is_not_handed_to_a_lookalike_on_one_close_face() -> None:
    # A stranger (never joined) with three linked photos; one is 0.5 from the attendee's selfie.
    verdicts = run([at(0.5), at(0.75), at(0.9)], {1: me(at(0))})
    assert verdicts.get((1, 100)) is not Verdict.SURE
    assert (1, 101) not in verdicts and (1, 102) not in verdicts


def test_small_faces_need_stronger_evidence_and_do_not_chain() -> None:
    verdicts = run([at(0.48), at(0.48, 0.1)], {1: me(at(0))}, widths=[50.0, 120.0])
    assert verdicts == {(1, 100): Verdict.MAYBE, (1, 101): Verdict.SURE}
    labels = group_labels(np.stack([at(0.48), at(0.48, 0.1)]), [1, 2], [50.0, 120.0], RULE)
    assert labels[0] != labels[1]


def test_faces_of_one_photo_never_link() -> None:
    labels = group_labels(np.stack([at(0.1), at(0.2)]), [7, 7], [120.0, 120.0], RULE)
    assert labels[0] != labels[1]


def test_not_me_hides_the_photo_and_counts_against_similar_faces() -> None:
    attendee = me(at(0), rejected=np.stack([at(0.45, 0.3)]), not_me_photos=frozenset({100}))
    verdicts = run([at(0.1), at(0.45, 0.28), at(-0.3)], {1: attendee})
    # photo 100: rejected; photo 101: closer to the rejected face than to the selfie; 102: theirs
    assert verdicts == {(1, 102): Verdict.SURE}


def test_is_me_makes_a_photo_theirs() -> None:
    attendee = me(at(0), at(0, 0.57), is_me_photos=frozenset({100}))
    assert run([at(0, 0.57)], {1: attendee}) == {(1, 100): Verdict.SURE}


def test_photo_verdict_sure_beats_maybe() -> None:
    verdicts = run([at(0.3), at(0, 0.56)], {1: me(at(0))})
    assert verdicts[(1, 100)] is Verdict.SURE
    from snapmatch.matching_rule import FaceDecision

    merged = photo_verdicts([FaceDecision(0, 1, Verdict.MAYBE, 0.55), FaceDecision(1, 1, Verdict.SURE, 0.3)], [5, 5])
    assert merged == {(1, 5): (Verdict.SURE, 0.3)}


def test_threshold_setting_moves_the_whole_rule() -> None:
    stricter = MatchRule.from_threshold(0.5)
    assert stricter.threshold == 0.5 and stricter.sure < RULE.sure and stricter.reach < RULE.reach


def test_provider_hits_follow_the_same_rules_on_a_similarity_scale() -> None:
    rule = ProviderRule(sure_similarity=90.0, margin=2.0)
    hits = [
        (1, 10, 100, 0.05),  # 95: sure for 1
        (2, 10, 100, 0.12),  # 88 for 2 on the same face: 1 has it
        (2, 11, 101, 0.15),  # 85: maybe for 2
        (1, 12, 102, 0.02),  # 98, but 1 said "not me" to photo 102
        (1, 13, 103, 0.05),  # 95 vs 94 for 2: too close to call, only maybe
        (2, 13, 103, 0.06),
    ]
    verdicts = decide_provider_hits(hits, {1: {102}}, rule)
    assert {k: v for k, (v, _) in verdicts.items()} == {
        (1, 10): Verdict.SURE,
        (2, 11): Verdict.MAYBE,
        (1, 13): Verdict.MAYBE,
    }


def test_groups_merge_until_the_cap_then_a_face_joins_the_group_it_links_to_most() -> None:
    from dataclasses import replace

    from snapmatch.matching_rule import join_groups

    assert join_groups({}, {}, 9, RULE) == (9, set())
    assert join_groups({3: 1, 5: 2}, {3: 10, 5: 20}, 9, RULE) == (3, {5})
    capped = replace(RULE, max_group=25)
    assert join_groups({3: 1, 5: 2}, {3: 10, 5: 20}, 9, capped) == (5, set())
