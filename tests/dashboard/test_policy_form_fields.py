"""The policy editor's input an operator trusts (issue 15, part 3): errors beside their
fields, an out-of-range number said as such, empty fields showing their default."""

from __future__ import annotations

import re

from tests.dashboard.test_dashboard_pages import form_data, setup  # noqa: F401 - fixture


def _field(page: str, name: str) -> str:
    """The HTML of one field's row in the editor."""
    return page.split(f'data-field="{name}"')[1].split('<div class="field"')[0]


def test_a_number_too_large_says_out_of_range_beside_its_field(client, setup):  # noqa: F811
    client.force_login(setup["operator"])
    url = f"/workloads/{setup['a'].pk}/"
    response = client.post(
        url, form_data(setup["a"].policy, target="1e999"), HTTP_ACCEPT="application/json"
    )
    assert response.status_code == 400
    assert response.json()["errors"]["target"][0]["message"] == (
        "Out of range: too large for a number."
    )
    # A text input: a browser keeps "1e999" for the server instead of sending it empty.
    page = client.get(url).content.decode()
    assert re.search(r'<input type="text" name="target"[^>]*inputmode="decimal"', page)


def test_min_above_max_shows_beside_max_replicas_not_above_the_form(client, setup):  # noqa: F811
    client.force_login(setup["operator"])
    url = f"/workloads/{setup['a'].pk}/"
    data = form_data(setup["a"].policy, min_replicas=5, max_replicas=2)
    errors = client.post(url, data, HTTP_ACCEPT="application/json").json()["errors"]
    assert errors["max_replicas"][0]["message"] == "Min replicas cannot be above max replicas."
    assert "__all__" not in errors
    page = client.post(url, data).content.decode()
    assert "Min replicas cannot be above max replicas." in _field(page, "max_replicas")
    assert "Min replicas" not in page.split('id="form-errors">')[1].split("</div>")[0]


def test_empty_optional_fields_show_the_algorithms_default(client, setup):  # noqa: F811
    client.force_login(setup["operator"])
    page = client.get(f"/workloads/{setup['a'].pk}/").content.decode()
    assert setup["a"].policy.algorithm == "hpa"
    assert 'placeholder="300 s, the HPA default"' in _field(page, "scale_down_stabilization_s")
    assert 'placeholder="0.1, the HPA default"' in _field(page, "scale_up_tolerance")
    assert "placeholder" not in _field(page, "cooldown_s")  # HPA has none: APA's field
