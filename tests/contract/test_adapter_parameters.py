"""service/contract/parameters.py: type arrays coerced from the query string and the path."""


def test_a_type_array_parameter_is_coerced_from_the_query_string(adapter_client):
    assert adapter_client.get("/things", params={"limit": "7"}).json() == {"limit": 7, "limit_type": "int"}


def test_a_path_parameter_reaches_the_handler_as_its_type(adapter_client):
    assert adapter_client.get("/things/12").json() == {"thing_id": 12}
