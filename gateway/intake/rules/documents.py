"""Which documents a request needs, and whether they are there: RULES.md §4, §5 and DOCUMENT_NOT_CLEAN.

The list comes from the pathway, the signer, the authority and the patient's
status:
- authorization: the authorization; a representative's proof of authority, or
  for an estate's executor of a deceased patient the letters of authority and
  the death certificate.  An authority that cannot act for this patient
  (REPRESENTATIVE_AUTHORITY_INVALID) asks for no document: the fix is another
  signer, not another upload.
- subpoena: the subpoena, plus satisfactory assurances, unless a court order is
  uploaded with it (a court-ordered subpoena needs no assurances,
  164.512(e)(1)(i)); that court order is then itself required to be clean.
- court_order: the court order.
A kind is satisfied only by a document of that kind whose scan is clean.  A
present but unclean document is one finding, DOCUMENT_NOT_CLEAN, and not also
a DOC_*_REQUIRED.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from gateway.errors import FieldError
from gateway.intake.rules.context import DocumentFacts, RuleContext
from gateway.intake.rules.facts import as_body, authority, is_deceased, pathway
from gateway.intake.rules.registry import finding, rule
from gateway.intake.rules.representatives import ESTATE_EXECUTOR, authority_problem, representative_signed

CLEAN = "clean"
REQUIRED_CODES = {
    "authorization": "DOC_AUTHORIZATION_REQUIRED",
    "representative_authority": "DOC_REPRESENTATIVE_AUTHORITY_REQUIRED",
    "letters_of_authority": "DOC_LETTERS_OF_AUTHORITY_REQUIRED",
    "death_certificate": "DOC_DEATH_CERTIFICATE_REQUIRED",
    "subpoena": "DOC_SUBPOENA_REQUIRED",
    "satisfactory_assurances": "DOC_SATISFACTORY_ASSURANCES_REQUIRED",
    "court_order": "DOC_COURT_ORDER_REQUIRED",
}
_LABELS = {kind: kind.replace("_", " ") for kind in REQUIRED_CODES}


def _present(documents: tuple[DocumentFacts, ...], kind: str) -> bool:
    return any(doc.kind == kind for doc in documents)


def _clean(documents: tuple[DocumentFacts, ...], kind: str) -> bool:
    return any(doc.kind == kind and doc.scan_status == CLEAN for doc in documents)


def _representative_kinds(body: Mapping, ctx: RuleContext) -> list[str]:
    if not representative_signed(body) or authority_problem(body, ctx):
        return []
    if authority(body) == ESTATE_EXECUTOR and is_deceased(body):
        return ["letters_of_authority", "death_certificate"]
    # Any other authority, or none stated yet (AUTH_MISSING_REPRESENTATIVE_AUTHORITY), needs its proof.
    return ["representative_authority"]


def required_kinds(body: Any, ctx: RuleContext) -> list[str]:
    """The document kinds this request needs, in a stable order."""
    body = as_body(body)
    route = pathway(body)
    if route == "authorization":
        return ["authorization", *_representative_kinds(body, ctx)]
    if route == "subpoena":
        backing = "court_order" if _present(ctx.documents, "court_order") else "satisfactory_assurances"
        return ["subpoena", backing]
    if route == "court_order":
        return ["court_order"]
    return []


def required_documents(body: Any, ctx: RuleContext) -> list[dict]:
    """`[{"kind", "satisfied"}]`: satisfied only by a document of that kind scanned clean."""
    return [{"kind": kind, "satisfied": _clean(ctx.documents, kind)} for kind in required_kinds(body, ctx)]


# Kinds whose documents are read (gateway.intake.readings): signed forms a records clerk must be able to read.
READ_KINDS = ("authorization", "representative_authority")


def _unreadable(documents: tuple[DocumentFacts, ...], kind: str) -> bool:
    """Every clean document of the kind was read and found illegible (one legible or unread copy is enough)."""
    read = [doc.legible for doc in documents if doc.kind == kind and doc.scan_status == CLEAN]
    return bool(read) and all(legible is False for legible in read)


@rule(*REQUIRED_CODES.values(), "DOCUMENT_NOT_CLEAN", "DOC_UNREADABLE")
def documents_present_and_clean(body: Mapping, ctx: RuleContext) -> Iterator[FieldError]:
    """Each required kind needs a clean document: missing → DOC_*_REQUIRED, unclean → DOCUMENT_NOT_CLEAN."""
    for kind in required_kinds(body, ctx):
        if _clean(ctx.documents, kind):
            if kind in READ_KINDS and _unreadable(ctx.documents, kind):
                yield finding("DOC_UNREADABLE", "documents",
                              f"The uploaded {_LABELS[kind]} could not be read; upload a clear, complete copy "
                              "(a scan at 200 dpi or more).")
            continue
        if _present(ctx.documents, kind):
            yield finding("DOCUMENT_NOT_CLEAN", "documents",
                          f"The uploaded {_LABELS[kind]} document has not passed the virus scan; upload it "
                          "again or wait for the scan to finish.")
        else:
            yield finding(REQUIRED_CODES[kind], "documents")
