"""How the queue search reads a reference or a patient's name (unit: no database)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from gateway.intake.rules.names import name_words
from gateway.routing.queue import matcher


def row(reference="CLAIM-7731", first="Ana", last="Sílva-O'Brien", other=()):
    return SimpleNamespace(reference=reference, patient={"first_name": first, "last_name": last,
                                                         "other_names": list(other)})


def test_name_words_drop_case_accents_and_punctuation_but_no_word():
    assert name_words("Sílva-O'Brien") == ["silva", "obrien"]
    assert name_words("Ana Pa") == ["ana", "pa"]  # no legal-form suffix is dropped from a person's name
    assert name_words("J. R. Smith", join_initials=True) == ["jr", "smith"]
    assert name_words(None) == []


@pytest.mark.parametrize("text", ["silva", "SILVA", "Sílva", "silv", "ana silva", "silva, ana", "obrien",
                                  "O'Brien", "a s", "claim-77", "7731", "cláim 7731"])
def test_a_search_finds_the_request(text):
    assert matcher(text)(row())


@pytest.mark.parametrize("text", ["ana costa", "silvana", "brien", "claim-78", "ana silva costa"])
def test_a_search_does_not_find_another_patient(text):
    assert not matcher(text)(row())


def test_former_names_count_one_name_at_a_time():
    former = row(first="Ana", last="Silva", other=["Beatriz Costa Núñez"])
    assert matcher("nunez")(former) and matcher("beatriz costa")(former)
    assert not matcher("ana nunez")(former)  # words of two different names are not one name
    assert matcher("J Tolkien")(row(first="J. R. R.", last="Tolkien"))
    assert matcher("jrr tolkien")(row(first="J. R. R.", last="Tolkien"))
