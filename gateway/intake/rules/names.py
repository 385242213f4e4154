"""Comparing names of organizations and people as a records clerk would.

Authorizations are typed by hand, so "Smith & Jones, L.L.P." and
"smith and jones llp" name the same firm; but dropping or adding a word of
substance ("Smith Jones & Brown") names another one.  Normalization therefore
only removes what is cosmetic: case, accents, punctuation, "&"/"and", a leading
"the" and trailing legal-form suffixes.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

# Legal-form suffixes that say nothing about who the organization is.
SUFFIXES = frozenset({
    "llp", "lllp", "llc", "lp", "pllc", "pc", "pa", "plc", "inc", "incorporated",
    "co", "corp", "corporation", "company", "ltd", "limited",
})
# Apostrophes vanish instead of splitting a word: "O'Brien" is "OBrien", not "O Brien".
_VANISHING = frozenset("'’‘`´")


def _tokens(value: str) -> list[str]:
    chars: list[str] = []
    for ch in unicodedata.normalize("NFKD", value):
        if unicodedata.combining(ch) or ch in _VANISHING:
            continue
        if ch == "&":
            chars.append(" and ")
        elif ch.isalnum():
            chars.append(ch)
        else:
            chars.append(" ")
    return "".join(chars).casefold().split()


def _join_initials(tokens: list[str]) -> list[str]:
    # "L.L.P." and "P. C." arrive as runs of one-letter words; glue each run back together.
    out: list[str] = []
    run: list[str] = []
    for token in [*tokens, ""]:
        if len(token) == 1:
            run.append(token)
            continue
        if run:
            out.append("".join(run))
            run = []
        if token:
            out.append(token)
    return out


def normalize_name(value: object) -> str:
    """The cosmetic-free form of a name; "" for a blank or non-string value."""
    if not isinstance(value, str):
        return ""
    tokens = _join_initials(_tokens(value))
    if len(tokens) > 1 and tokens[0] == "the":
        tokens = tokens[1:]
    while len(tokens) > 1 and tokens[-1] in SUFFIXES:
        tokens.pop()
    # "&" versus "and" versus a comma is cosmetic, so the conjunction never counts.
    kept = [t for t in tokens if t != "and"]
    return " ".join(kept or tokens)


def names_match(a: object, b: object, aliases: Iterable[str] = ()) -> bool:
    """Whether name a is name b, or one of b's aliases, up to cosmetic differences."""
    left = normalize_name(a)
    if not left:
        return False  # two blanks are not a match: nothing was named
    if isinstance(aliases, str):
        aliases = (aliases,)
    return any(left == normalize_name(candidate) for candidate in (b, *aliases))


# "X and its affiliates", "X & affiliates", "X and all of its affiliated hospitals", "X, including its
# subsidiaries and affiliates": matched on the normalized form, where "and" and punctuation are already gone.
_AFFILIATES = re.compile(
    r"^(?P<base>.+?) (?:including |together with )?(?:all (?:of )?)?(?:its |their )?(?:subsidiaries )?"
    r"(?:affiliates|affiliated (?:entities|facilities|hospitals|organizations|providers|practices|companies))$")


def affiliates_of(value: object) -> str | None:
    """The X of an "X and its affiliates" form (normalized), or None when `value` is not such a form."""
    match = _AFFILIATES.match(normalize_name(value))
    return normalize_name(match["base"]) or None if match else None


def name_words(value: object, *, join_initials: bool = False) -> list[str]:
    """A person's name as words to search by: case, accents, apostrophes and punctuation gone, nothing dropped.

    "Sílva-O'Brien" is ["silva", "obrien"]; with `join_initials`, "J. R. Smith" is ["jr", "smith"].  Unlike
    `normalize_name` no suffix or article is removed: those belong to organizations' names, and a person may
    well be called "Pa" or "Co".
    """
    if not isinstance(value, str):
        return []
    tokens = _tokens(value)
    return _join_initials(tokens) if join_initials else tokens
