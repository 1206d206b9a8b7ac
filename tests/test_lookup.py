"""Prompt-lookup drafts (tfopt/runtime/lookup.py): what follows the latest earlier occurrence."""

from __future__ import annotations

from tfopt.runtime.lookup import accepted, draft


def test_draft_takes_what_followed_the_latest_occurrence() -> None:
    history = [4, 5, 6, 9, 4, 5, 7, 1, 4, 5]  # "4 5" last seen before 7, earlier before 6
    assert draft(history, 2) == [7, 1]
    assert draft([1, 2, 3, 4], 3) == []  # nothing recurs
    assert draft(history, 0) == []


def test_draft_prefers_the_longest_ngram() -> None:
    history = [1, 2, 3, 8, 2, 3, 9, 1, 2, 3]  # trigram "1 2 3" -> 8; bigram "2 3" alone -> 9
    assert draft(history, 1) == [8]


def test_a_repeating_stretch_drafts_the_full_limit() -> None:
    assert draft([5, 1, 1, 1, 1, 1], 7) == [1] * 7
    assert draft([7, 8, 9] * 3 + [7, 8], 7) == [9, 7, 8, 9, 7, 8, 9]


def test_accepted_counts_the_agreeing_prefix() -> None:
    assert accepted([3, 4, 5], [3, 4, 6, 0]) == 2
    assert accepted([3], [2, 9]) == 0
    assert accepted([], [1]) == 0
