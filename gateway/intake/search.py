"""Search by reference or patient name, as a records clerk reads them (the staff queue and the requester's
caseload share it).

The patient is a JSON column, and names must match as a clerk reads them — "silva" finds "Sílva", "ana s"
finds "Ana Silva", a former name counts — on SQLite and PostgreSQL alike.  Rather than a normalized copy of
every name kept up to date on every write, a search reads the filtered list in its own order, a batch at a
time, and judges each row in Python with the rules' own name normalization (`rules.names.name_words`), at
most `SEARCH_SCAN_LIMIT` rows a call (`pagination.keyset_filtered_page`: a page may stop short with a cursor
that resumes where the reading stopped, so the cost of a call is bounded and nothing is skipped).

Search terms are arguments, never stored: they travel in POST bodies (never a URL), and neither audit
entries nor logs carry them.
"""

from __future__ import annotations

import unicodedata

from gateway.intake.rules.names import name_words

SEARCH_SCAN_LIMIT = 5000
SEARCH_BATCH = 1000
SEARCH_MIN_LENGTH, SEARCH_MAX_LENGTH = 2, 100


def _folded(value: object) -> str:
    """A reference as it is compared: letters and digits only, without case or accents ("CLAIM-7731" is
    "claim7731", so "claim 7731" and "Claim7731" find it)."""
    if not isinstance(value, str):
        return ""
    return "".join(ch for ch in unicodedata.normalize("NFKD", value).casefold()
                   if ch.isalnum() and not unicodedata.combining(ch))


def _covers(name: str, wanted: list[str]) -> bool:
    """Every searched word starts a word of the name (in any order: "silva ana" finds "Ana Silva")."""
    words = set(name_words(name)) | set(name_words(name, join_initials=True))
    return all(any(word.startswith(part) for word in words) for part in wanted)


def matcher(text: str):
    """The test a queue row passes for the search `text`: in its reference, or the patient's name or a former one."""
    needle = _folded(text)
    wanted = name_words(text)

    def keep(row) -> bool:
        if needle and needle in _folded(row.reference):
            return True
        if not wanted:
            return False
        patient = row.patient if isinstance(row.patient, dict) else {}
        names = [f"{patient.get('first_name') or ''} {patient.get('last_name') or ''}",
                 *(other for other in patient.get("other_names") or () if isinstance(other, str))]
        # Every word of a match is part of all the names' words run together: most rows fail this at once.
        run_together = "".join(name_words(" ".join(names)))
        if not all(part in run_together for part in wanted):
            return False
        return any(_covers(name, wanted) for name in names)

    return keep
