from medviewer.imaging.person_names import display_name, readable


def test_dicom_names_read_as_people_write_them() -> None:
    assert readable("Doe^Peter") == "Doe, Peter"
    assert readable("Doe^Peter^J^^") == "Doe, Peter J"
    assert readable("OB^^^^") == "OB"
    assert readable("^Anna") == "Anna"
    assert readable("patient-01") == "patient-01"
    assert readable("Yamada^Tarou=山田^太郎") == "Yamada, Tarou"


def test_unnamed_patients_get_a_name_that_tells_them_apart() -> None:
    assert display_name("Doe^Peter", "123", "/x/a.dcm") == "Doe, Peter"
    assert display_name("", "123", "/x/a.dcm") == "ID 123"
    assert display_name("^^", "", "/data/emri_small.dcm") == "Unnamed (emri_small.dcm)"
    assert display_name("", "  ", "") == "Unnamed"
