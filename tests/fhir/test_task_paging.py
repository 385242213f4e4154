"""FHIR Task search pages: `total` counts every match, the `next` link resumes after the last Task shown.

On both databases (unlike the translation tests beside it): the pages are keyset queries."""

from __future__ import annotations

import copy

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.task import Task

from tests.fhir.helpers import post_task, published_example, signed_in_payer

FHIR = "application/fhir+json"


@pytest.fixture
def payer(client, settings, db, tmp_path):
    return signed_in_payer(client, settings, db, tmp_path)


def test_search_pages_follow_the_next_link_and_total_counts_every_match(client, payer):
    """Five Tasks two at a time: three pages, each Task once, newest first; `total` is 5 on every page and the
    `next` link keeps the search's filters."""
    made = []
    for n in range(5):
        task = copy.deepcopy(published_example())
        task["identifier"][0]["value"] = f"paged-{n}"
        made.append(Task.model_validate(post_task(client, payer, task).get_json()).id)  # rejected: no authorization

    seen, pages = [], 0
    url = "/fhir/r4/Task?status=rejected&_count=2"
    while url:
        response = client.get(url, headers=payer["headers"])
        assert response.status_code == 200, response.get_json()
        bundle = Bundle.model_validate(response.get_json())
        pages += 1
        assert bundle.total == 5 and len(bundle.entry) <= 2
        seen += [entry.resource.id for entry in bundle.entry]
        links = {link.relation: link.url for link in bundle.link}
        url = links.get("next")
        if url:
            assert "status=rejected" in url and "_count=2" in url
            url = url.removeprefix("http://localhost")
    assert pages == 3
    assert seen == list(reversed(made))  # most recently updated first, none skipped or repeated

    everything = Bundle.model_validate(client.get("/fhir/r4/Task?_count=100", headers=payer["headers"]).get_json())
    assert everything.total == 5 and not [link for link in everything.link if link.relation == "next"]


def test_a_cursor_this_search_did_not_issue_is_an_operation_outcome(client, payer):
    response = client.get("/fhir/r4/Task?_cursor=not-a-cursor", headers=payer["headers"])
    assert response.status_code == 400 and response.mimetype == FHIR
    assert OperationOutcome.model_validate(response.get_json()).issue[0].details.coding[0].code == "INVALID_CURSOR"
