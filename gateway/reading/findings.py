"""What the signed form says against what the requester typed: the advisory FORM_* findings.

Matching is tolerant the way a records clerk is with a faxed form: case,
accents, hyphens and punctuation never count, nor the usual OCR confusions
(0/O, 1/l/I, "|" for l), nor one wrong letter in a long word.  Organization
names go through the rules' own normalization (`gateway.intake.rules.names`),
so a discloser matches here whenever AUTH_DISCLOSER_MISMATCH would accept it;
the caller passes every name the rules accept (facility, aliases, health
system).  Dates are read in the usual US forms (02/29/1980, 2/29/80,
02-29-1980, 1980-02-29, February 29, 1980, Feb. 29 1980).  A finding carries
the code, the typed field it is about, a catalogue message and the page; never
any text from the form.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date

from gateway.intake.rules.names import name_words, normalize_name
from gateway.reading.reader import PageText

ADVISORY_CODES = ("FORM_PATIENT_NAME_NOT_FOUND", "FORM_DOB_NOT_FOUND", "FORM_DISCLOSER_NOT_FOUND",
                  "FORM_RECIPIENT_NOT_FOUND", "FORM_STATEMENT_NOT_FOUND", "FORM_DATE_MISMATCH")

# OCR's usual confusions, folded the same way on both sides so either reading matches.
_FOLD = str.maketrans({"0": "o", "1": "l", "i": "l", "|": "l", "!": "l"})
_MONTHS = {name: index for index, names in enumerate(
    (("jan", "january"), ("feb", "february"), ("mar", "march"), ("apr", "april"), ("may",), ("jun", "june"),
     ("jul", "july"), ("aug", "august"), ("sep", "sept", "september"), ("oct", "october"), ("nov", "november"),
     ("dec", "december")), start=1) for name in names}
_NUMERIC = re.compile(r"(?<![\d/])(\d{1,2})\s?[/\-.]\s?(\d{1,2})\s?[/\-.]\s?(\d{4}|\d{2})(?![\d/])")
_ISO = re.compile(r"(?<!\d)(\d{4})-(\d{1,2})-(\d{1,2})(?!\d)")
_WORDY = re.compile(r"\b([A-Za-z]{3,9})\.?\s+(\d{1,2}),?\s+(\d{4})\b")
# OCR reads digits as letters inside dates: "O2/29/198O", "l1/02/2026".
_DIGITS = str.maketrans({"O": "0", "o": "0", "l": "1", "I": "1", "|": "1", "S": "5", "B": "8"})
_DATEISH = re.compile(r"[0-9OoIl|SB]{1,4}(?:\s?[/\-.]\s?[0-9OoIl|SB]{1,4}){2}")
_SPLIT_DIGITS = re.compile(r"(?<=\d) (?=\d)")
_SIGNED = re.compile(r"dat\w*\s+s\w*gned|s\w*gnature\s+dat|s\w*gned\s+(?:on|date)", re.IGNORECASE)
_EXPIRES = re.compile(r"exp\w*r\w*(?:\s+on|\s+date)?", re.IGNORECASE)

# The three 164.508(c)(2) statements, by their usual phrasings (folded words, any of each group).
STATEMENTS = {
    "right_to_revoke": (("revoke",), ("revocation",), ("revoked",)),
    "no_conditioning": (("condition",), ("conditioned",)),
    "redisclosure": (("redisclosure",), ("redisclose",), ("redisclosed",), ("re", "disclosed"),
                     ("no", "longer", "be", "protected")),
}
STATEMENT_LABELS = {"right_to_revoke": "right to revoke", "no_conditioning": "no conditioning",
                    "redisclosure": "redisclosure"}


@dataclass(frozen=True)
class Typed:
    """The typed request's facts the form is checked against (None or empty: nothing to check)."""

    patient_names: tuple[tuple[str, str], ...] = ()  # (first, last), then any other names as (full, "")
    date_of_birth: date | None = None
    discloser_names: tuple[str, ...] = ()  # every name the rules accept for the discloser
    recipient_names: tuple[str, ...] = ()
    signed_on: date | None = None
    expires_on: date | None = None
    statements: tuple[str, ...] = field(default=tuple(STATEMENTS))


def _fold(word: str) -> str:
    return word.casefold().translate(_FOLD)


def _close(a: str, b: str) -> bool:
    """Equal, or one edit apart when both are long enough for a single OCR slip not to make another name."""
    if a == b:
        return True
    if min(len(a), len(b)) < 6 or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b, strict=True)) == 1
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    return any(long_[:i] + long_[i + 1:] == short for i in range(len(long_)))


def _contains(haystack: list[str], needle: list[str]) -> bool:
    n = len(needle)
    if not n:
        return False
    return any(all(_close(haystack[i + k], needle[k]) for k in range(n)) for i in range(len(haystack) - n + 1))


def _words(text: str) -> list[str]:
    return [_fold(w) for w in name_words(text.replace("|", "l"))]


def _org_words(name: str) -> list[str]:
    return [_fold(w) for w in normalize_name(name).split()]


def _text_org_words(text: str) -> list[str]:
    # The text goes through the same cosmetic removal as organization names, word by word ("&" and "and" vanish).
    return [_fold(w) for w in name_words(text.replace("&", " ")) if w != "and"]


def _year(raw: str) -> int:
    year = int(raw)
    return year + (2000 if year < 50 else 1900) if year < 100 else year


def _safe(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def dates_in(text: str) -> list[date]:
    """Every date in the text, in order, in the usual US forms (month first)."""
    cleaned = _DATEISH.sub(lambda m: m.group(0).translate(_DIGITS), text)
    found: list[tuple[int, date]] = []
    for match in _ISO.finditer(cleaned):
        if (d := _safe(int(match[1]), int(match[2]), int(match[3]))) is not None:
            found.append((match.start(), d))
    for match in _NUMERIC.finditer(cleaned):
        if (d := _safe(_year(match[3]), int(match[1]), int(match[2]))) is not None:
            found.append((match.start(), d))
    for match in _WORDY.finditer(cleaned):
        month = _MONTHS.get(match[1].casefold())
        if month and (d := _safe(int(match[3]), month, int(match[2]))) is not None:
            found.append((match.start(), d))
    return [d for _, d in sorted(found, key=lambda pair: pair[0])]


def _labelled_date(page: PageText, label: re.Pattern) -> date | None:
    """The first date on a line with the label after it (or on the next line)."""
    lines = page.text.splitlines()
    for index, line in enumerate(lines):
        match = label.search(line)
        if match is None:
            continue
        # OCR splits a number now and then ("1 1/02/2026"): after a label only a date follows, so join digits.
        rest = [_SPLIT_DIGITS.sub("", part) for part in (line[match.end():], *lines[index + 1:index + 2])]
        after = dates_in(rest[0]) or (dates_in(rest[1]) if len(rest) > 1 else [])
        if after:
            return after[0]
    return None


def _finding(code: str, field_name: str, message: str, page: int | None) -> dict:
    return {"code": code, "field": field_name, "message": message, "page": page}


def check_form(pages: list[PageText], typed: Typed) -> list[dict]:
    """The advisory findings of legible pages against the typed request (empty when everything is there)."""
    if not pages:
        return []
    words = [w for page in pages for w in _words(page.text)]
    org_words = [w for page in pages for w in _text_org_words(page.text)]
    all_dates = [d for page in pages for d in dates_in(page.text)]
    out: list[dict] = []
    if typed.patient_names and not any(_contains(words, _words(f"{first} {last}"))
                                       or (last and _contains(words, _words(f"{last} {first}")))
                                       for first, last in typed.patient_names):
        out.append(_finding("FORM_PATIENT_NAME_NOT_FOUND", "patient",
                            "The patient's name as typed was not found on the signed form.", None))
    if typed.date_of_birth is not None and typed.date_of_birth not in all_dates:
        out.append(_finding("FORM_DOB_NOT_FOUND", "patient.date_of_birth",
                            "The date of birth as typed was not found on the signed form.", None))
    if typed.discloser_names and not any(_contains(org_words, _org_words(n)) for n in typed.discloser_names):
        out.append(_finding("FORM_DISCLOSER_NOT_FOUND", "authorization.discloser",
                            "The facility allowed to release the records was not found on the signed form.", None))
    if typed.recipient_names and not any(_contains(org_words, _org_words(n)) for n in typed.recipient_names):
        out.append(_finding("FORM_RECIPIENT_NOT_FOUND", "authorization.recipient",
                            "The recipient as typed was not found on the signed form.", None))
    for statement in typed.statements:
        if not any(_contains(words, [_fold(w) for w in phrase]) for phrase in STATEMENTS[statement]):
            out.append(_finding("FORM_STATEMENT_NOT_FOUND", f"authorization.statements.{statement}",
                                f"The {STATEMENT_LABELS[statement]} statement was not found on the signed form.",
                                None))
    for typed_date, label, field_name, what in ((typed.signed_on, _SIGNED, "authorization.signed_on", "signature"),
                                                (typed.expires_on, _EXPIRES, "authorization.expires_on",
                                                 "expiration")):
        if typed_date is None:
            continue
        for page in pages:
            on_form = _labelled_date(page, label)
            if on_form is not None:
                if on_form != typed_date:
                    out.append(_finding("FORM_DATE_MISMATCH", field_name,
                                        f"The {what} date on the signed form differs from the typed one.",
                                        page.number))
                break
    return out
