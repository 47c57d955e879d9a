"""Unknown paths and methods under /api/ answer in the API's error shape (issue 23, item 7),
with DEBUG on (the demo) as in production; pages elsewhere keep their HTML 404."""

import pytest

pytestmark = pytest.mark.django_db

NOT_FOUND = {"error": {"code": "not_found", "message": "No such endpoint.", "details": {}}}


def refused(method: str) -> dict:
    return {
        "error": {
            "code": "method_not_allowed",
            "message": f'Method "{method}" not allowed.',
            "details": {},
        }
    }


@pytest.fixture(params=[False, True], ids=["production", "debug"])
def debug(request, settings):
    settings.DEBUG = request.param
    return request.param


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/nope",
        "/api/v2/accounts",
        "/api/",
        "/api",
        "/api/v1/",
        "/api/v1/accounts/",  # the API's paths have no trailing slash
        "/api/v1/accounts/shop/nope",
        "/api/v1/invoices/not-a-number",
    ],
)
@pytest.mark.parametrize("method", ["get", "post", "delete"])
def test_an_unknown_api_path_is_a_json_404(debug, partner_api, client, path, method):
    for caller in (partner_api, client):  # with a key and without
        response = getattr(caller, method)(path)
        assert response.status_code == 404, (path, response.content[:200])
        assert response["Content-Type"] == "application/json"
        assert response.json() == NOT_FOUND
        # The headers every answer gets are kept (docs/deploy.md, "Security").
        assert "no-store" in response["Cache-Control"] and response["X-Frame-Options"] == "DENY"


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("delete", "/api/v1/plans", "GET"),
        ("put", "/api/v1/events", "POST"),
        ("patch", "/api/v1/accounts", "GET, POST"),
        ("post", "/api/v1/accounts/shop/usage", "GET"),
    ],
)
def test_a_known_api_path_with_an_unknown_method_is_a_json_405(
    debug, partner_api, account, method, path, allowed
):
    response = getattr(partner_api, method)(path)
    assert response.status_code == 405
    assert response.json() == refused(method.upper())
    assert set(response["Allow"].split(", ")) >= set(allowed.split(", "))


def test_the_schema_pages_refuse_methods_in_the_same_shape(debug, client):
    # Swagger UI's page is a plain Django view, not the API's: its 405 was a text/plain body.
    for path in ("/api/docs/", "/api/schema/"):
        response = client.post(path)
        assert response.status_code == 405, path
        assert response.json() == refused("POST")
        assert "GET" in response["Allow"]


def test_a_path_one_slash_short_of_the_schema_still_redirects(debug, client):
    response = client.get("/api/schema")
    assert (response.status_code, response["Location"]) == (301, "/api/schema/")


@pytest.mark.parametrize("path", ["/nope", "/billing/nope/usage/x", "/apinope", "/console/x/y/z"])
def test_pages_elsewhere_keep_their_html_404(debug, client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
