"""Issue 16's CSV import in the portal: a 50-row file with 3 bad rows in Chromium (errors per row and field),
several PDFs dropped at once and matched to their drafts by reference, "submit all ready", axe on each page;
and the file-level refusals through the test client."""

from __future__ import annotations

import csv
import io

import pytest
from playwright.sync_api import expect

from gateway.portal.csv_import import TEMPLATE_COLUMNS
from tests import samples
from tests.factories import make_tenant, request_body, unique
from tests.portal.conftest import screenshot
from tests.portal.helpers import csrf_of, portal_client, portal_sign_in
from tests.portal.test_accessibility import audit, axe_source  # noqa: F401  (the axe fixture)
from tests.portal.test_browser import sign_in

# One database (tests/conftest.py): the CSV import page over the batch service, which
# tests/intake/test_batches.py runs on both databases.
pytestmark = pytest.mark.one_database

COLUMNS = (*TEMPLATE_COLUMNS, "records.format", "patient.other_names")


def cell(body: dict, path: str) -> str:
    value = body
    for name in path.split("."):
        value = value.get(name) if isinstance(value, dict) else None
    if isinstance(value, list):
        return ";".join(value)
    if isinstance(value, bool):
        return "yes" if value else ""
    return "" if value is None else str(value)


def csv_of(bodies: list[dict], columns=COLUMNS) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    for body in bodies:
        writer.writerow([cell(body, c) for c in columns])
    return out.getvalue().encode()


def fifty_rows_three_bad() -> tuple[list[dict], dict[int, tuple[str, str]]]:
    """50 bodies; rows 7, 20 and 41 (spreadsheet rows: the header is row 1) are wrong, each in one field."""
    tag = unique("IMP")
    bodies = [request_body(reference=f"{tag}-{n:02d}", patient__other_names=["Ana Souza"] if n == 3 else [])
              for n in range(50)]
    bodies[5]["patient"]["date_of_birth"] = "1980-13-45"
    bodies[18]["patient"]["last_name"] = ""
    bodies[39]["reference"] = bodies[2]["reference"]
    return bodies, {7: ("patient.date_of_birth", "INVALID_FIELD"), 20: ("patient.last_name", "FIELD_REQUIRED"),
                    41: ("reference", "DUPLICATE_REFERENCE")}


def test_import_fifty_rows_drop_their_authorizations_and_submit_the_ready_ones(portal_site, new_page, db, tmp_path,
                                                                                axe_source):  # noqa: F811
    firm = make_tenant(db)
    bodies, bad = fifty_rows_three_bad()
    page = new_page(portal_site)
    sign_in(page, firm.requester_email)
    page.get_by_role("link", name="Import").click()
    # The click returns before the navigation ends: audit the import page, not the one it leaves.
    expect(page.get_by_role("heading", name="Import requests from a spreadsheet")).to_be_visible()
    audit(page, axe_source, "import page")
    page.get_by_label("CSV file", exact=True).set_input_files(files=[{"name": "requests.csv", "mimeType": "text/csv",
                                                          "buffer": csv_of(bodies)}])
    page.get_by_role("button", name="Import").click()

    expect(page.locator("#import-counts")).to_contain_text("50 rows: 47 saved as drafts, 3 with problems")
    for row, (field, code) in bad.items():
        line = page.locator(f'#rejected tr[data-row="{row}"]')
        expect(line).to_have_count(1)
        expect(line).to_have_attribute("data-field", field)
        expect(line).to_have_attribute("data-code", code)
    expect(page.locator("#rejected").get_by_text("Patient's date of birth: enter a real date.")).to_be_visible()
    expect(page.locator("[data-draft]")).to_have_count(47)
    audit(page, axe_source, "import result with rejected rows and drafts")

    # Three authorizations and one stray file, dropped at once: each matched by the reference its name starts with.
    pdf = samples.minimal_pdf()
    named = [f"{bodies[0]['reference']}_authorization.pdf", f"{bodies[1]['reference']}.pdf",
             f"{bodies[49]['reference']} authorization.pdf", "SCAN-0001.pdf"]
    page.locator("#bulk-files").set_input_files(files=[{"name": n, "mimeType": "application/pdf", "buffer": pdf}
                                                       for n in named])
    uploads = page.locator("[data-bulk-drop] .uploads li")
    expect(uploads).to_have_count(4)
    expect(page.locator('[data-bulk-drop] li[data-result="clean"]')).to_have_count(3, timeout=60_000)
    stray = page.locator('[data-bulk-drop] li[data-result="unmatched"]')
    expect(stray).to_contain_text("SCAN-0001.pdf")
    expect(stray).to_contain_text("Not uploaded")
    # The checks refresh once the uploads are in: those three drafts are now ready.
    expect(page.locator("[data-draft] [data-ready]")).to_have_count(3, timeout=30_000)
    audit(page, axe_source, "drafts after a multi-file drop")
    screenshot(page, "18-csv-import")

    page.get_by_role("button", name="Submit all ready").click()
    expect(page.locator("#submit-report")).to_contain_text("3 requests were submitted")
    expect(page.locator("#submit-report")).to_contain_text("44 drafts are not ready yet")
    for n in (0, 1, 49):
        row = page.locator(f'[data-draft][data-reference="{bodies[n]["reference"]}"]')
        expect(row.locator("[data-status]")).not_to_have_attribute("data-status", "draft")
    audit(page, axe_source, "import after submit all ready")


@pytest.fixture(scope="module")
def requester(app, db):
    firm = make_tenant(db)
    browser = portal_client(app)
    csrf = portal_sign_in(browser, firm.requester_email)
    return browser, csrf


def post_csv(browser, csrf, data: bytes):
    return browser.post("/portal/imports", data={"csrf_token": csrf, "file": (io.BytesIO(data), "r.csv")},
                        content_type="multipart/form-data")


@pytest.mark.parametrize(("data", "says"), [
    (b"reference,patient.shoe_size\nA,42\n", "Unknown column(s): patient.shoe_size"),
    ("reference,patient.last_name\nA,Müller\n".encode("latin-1"), "not UTF-8"),
    (b"reference,facility\n", "no rows"),
    (b"reference,facility\n" + b"A,tufts-mc\n" * 1001, "more than 1,000 rows"),
])
def test_a_file_that_cannot_be_imported_says_why_and_creates_nothing(requester, data, says):
    browser, csrf = requester
    response = post_csv(browser, csrf, data)
    assert response.status_code == 422
    assert says in response.get_data(as_text=True)


def test_the_import_form_needs_its_csrf_token(requester):
    browser, _csrf = requester
    response = post_csv(browser, "forged", csv_of([request_body()]))
    assert response.status_code == 403


def test_another_firm_cannot_open_an_import(app, db, requester):
    browser, csrf = requester
    created = post_csv(browser, csrf, csv_of([request_body(), request_body(reference="")]))
    assert created.status_code == 303
    path = created.headers["Location"]
    mine = browser.get(path).get_data(as_text=True)
    assert "2 rows: " in mine and "Row 3" in mine
    other = portal_client(app)
    portal_sign_in(other, make_tenant(db).requester_email)
    assert other.get(path).status_code == 404
    assert other.post(path + "/submit", data={"csrf_token": csrf_of(other.get("/portal/imports").get_data(
        as_text=True))}).status_code == 404
