"""service/contract/paths.py: a concrete path is matched before a templated one."""


def test_a_concrete_path_wins_over_a_template(adapter_client):
    assert adapter_client.get("/things/special").json() == {"special": True}


def test_a_method_the_concrete_path_does_not_declare_is_405_not_a_bad_template_value(adapter_client):
    assert adapter_client.put("/things/special").status_code == 405
    assert adapter_client.put("/things/3").status_code == 200
