"""Tests of livercad.io.manifest: parsing, validation (every offending row listed), round-trips."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livercad.errors import InputError
from livercad.io.manifest import ManifestRow, case_id_from_path, read_manifest, write_manifest
from livercad.io.manifest_check import parse_liver_labels, safe_case_id, validate_rows

CLASSES = ("normal", "steatosis", "cirrhosis")


def _touch(folder: Path, *names: str) -> None:
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"x")


def _manifest(folder: Path, text: str, name: str = "manifest.csv") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_reads_rows_resolves_paths_and_defaults(tmp_path: Path) -> None:
    _touch(tmp_path, "images/a.nii.gz", "masks/a.nii.gz", "images/b.nii")
    path = _manifest(tmp_path, "\ufeffCase_ID , image,mask,label,split,patient_id,site,severity\n"
                               "a,images/a.nii.gz,masks/a.nii.gz,cirrhosis,Train,,s1,0.7\n"
                               "\n"
                               f"b,{tmp_path}/images/b.nii,,,,P9,s2,\n")
    a, b = read_manifest(path, classes=CLASSES)
    assert a == ManifestRow("a", "a", tmp_path / "images/a.nii.gz", tmp_path / "masks/a.nii.gz", "cirrhosis",
                            "train", {"site": "s1", "severity": "0.7"})
    assert b == ManifestRow("b", "P9", tmp_path / "images/b.nii", None, None, None, {"site": "s2", "severity": ""})


def test_case_id_defaults_to_image_name_without_column(tmp_path: Path) -> None:
    path = _manifest(tmp_path, "image\nimg/liver_3.nii.gz\nimg/x.nii\n")
    assert [r.case_id for r in read_manifest(path, check_files=False)] == ["liver_3", "x"]


def test_every_offending_row_is_listed_in_one_error(tmp_path: Path) -> None:
    _touch(tmp_path, "ok.nii.gz")
    path = _manifest(tmp_path, "case_id,image,mask,label,split\n"
                               "a,ok.nii.gz,,normal,\n"              # row 2: fine
                               "a,ok.nii.gz,,normal,\n"              # row 3: duplicate of row 2
                               "../evil,ok.nii.gz,,normal,\n"        # row 4: unsafe id
                               "c,missing.nii.gz,,normal,\n"         # row 5: missing image
                               "d,ok.nii.gz,nomask.nii.gz,Cirrhosis,\n"  # row 6: missing mask + unknown label
                               "e,ok.nii.gz,,normal,validation\n"    # row 7: bad split
                               "f,ok.nii.gz,,normal\n"               # row 8: wrong field count
                               ",ok.nii.gz,,normal,\n"               # row 9: empty id
                               "g,,,normal,\n")                      # row 10: empty image
    with pytest.raises(InputError) as info:
        read_manifest(path, classes=CLASSES)
    text = str(info.value)
    assert text.startswith(f"{path}: 9 problem(s): row 3: duplicate") and "\n" not in text
    expected = ["row 3: duplicate case_id 'a' (first at row 2)", "row 4: case_id '../evil' starts with '.'",
                "row 5: image file not found", "row 6: unknown label 'Cirrhosis'", "did you mean 'cirrhosis'?",
                "row 6: mask file not found", "row 7: split 'validation'", "row 8: 4 fields, the header has 5",
                "row 9: empty case_id", "row 10: empty image"]
    for fragment in expected:
        assert fragment in text, fragment
    assert "row 2:" not in text


def test_labels_and_files_only_checked_when_asked(tmp_path: Path) -> None:
    path = _manifest(tmp_path, "case_id,image,label\na,nowhere.nii.gz,whatever\n")
    assert read_manifest(path, check_files=False)[0].label == "whatever"
    with pytest.raises(InputError, match="row 2: image file not found"):
        read_manifest(path)


@pytest.mark.parametrize("text, match", [
    ("", "manifest is empty"),
    ("case_id,mask\na,b\n", "missing required column 'image' (found columns: case_id, mask)"),
    ("case_id;image;label\na;b;c\n", "seems to use ';' as separator"),
    ("case_id,image,image\n", "duplicate or empty column names: ['image']"),
    ("case_id,image,liver_labels\na,x.nii,1;2\n", "liver_labels '1;2' is not a comma-separated list"),
])
def test_structural_errors(text: str, match: str, tmp_path: Path) -> None:
    path = _manifest(tmp_path, text)
    with pytest.raises(InputError) as info:
        read_manifest(path, check_files=False)
    assert match in str(info.value) and str(path) in str(info.value)


def test_non_utf8_names_offset_and_line(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_bytes(b"case_id,image\nabc,x.nii\nd\xe9f,y.nii\n")
    with pytest.raises(InputError) as info:
        read_manifest(path, check_files=False)
    assert str(info.value) == (f"{path}: not UTF-8 text: byte 0xe9 at offset 25 (line 3); "
                               "re-save the manifest as UTF-8")


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="manifest file not found"):
        read_manifest(tmp_path / "none.csv")


@pytest.mark.parametrize("case_id", ["", ".hidden", "..", "a/b", "a\\b", "a..b", "tab\there", "x" * 129, " a",
                                     "a:b", "nul\x00"])
def test_unsafe_case_ids(case_id: str) -> None:
    with pytest.raises(InputError) as info:
        safe_case_id(case_id)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("case_id", ["liver_0", "volume-12", "P001.scan2", "x" * 128, "ünïcode"])
def test_safe_case_ids(case_id: str) -> None:
    assert safe_case_id(case_id) == case_id


@pytest.mark.parametrize("path, expected", [("a/liver_0.nii.gz", "liver_0"), ("b.NII", "b"), ("c.v2.nii", "c.v2"),
                                            ("d.mha", "d")])
def test_case_id_from_path(path: str, expected: str) -> None:
    assert case_id_from_path(path) == expected


def test_parse_liver_labels() -> None:
    assert parse_liver_labels("1,2") == (1, 2) and parse_liver_labels(" 3 ") == (3,)
    assert parse_liver_labels("") is None and parse_liver_labels(None) is None
    with pytest.raises(InputError):
        parse_liver_labels("liver")


def test_validate_rows_names_rows(tmp_path: Path) -> None:
    rows = [ManifestRow("a", "a", tmp_path / "x"), ManifestRow("a", "a", tmp_path / "y")]
    with pytest.raises(InputError, match=r"entry 2: duplicate case_id 'a' \(first at entry 1\)"):
        validate_rows(rows, tmp_path, check_files=False, row_names=["entry 1", "entry 2"])


def test_write_then_read_roundtrip(tmp_path: Path) -> None:
    _touch(tmp_path, "data/images/a.nii.gz", "data/masks/a.nii.gz", "elsewhere/b.nii")
    rows = [ManifestRow("a", "p1", tmp_path / "data/images/a.nii.gz", tmp_path / "data/masks/a.nii.gz", "normal",
                        "val", {"site": "s, with comma", "note": 'quote "q"'}),
            ManifestRow("b", "p2", tmp_path / "elsewhere/b.nii", None, None, None, {"modality": "ct"})]
    out = write_manifest(rows, tmp_path / "data" / "manifest.csv")
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "case_id,patient_id,image,mask,label,split,site,note,modality"
    assert lines[1].startswith("a,p1,images/a.nii.gz,masks/a.nii.gz,normal,val,")
    assert f",{tmp_path}/elsewhere/b.nii," in lines[2]
    back = read_manifest(out)
    assert back[0] == ManifestRow(**{**rows[0].__dict__, "extra": {**rows[0].extra, "modality": ""}})
    extra = {"site": "", "note": "", "modality": "ct"}
    assert back[1] == ManifestRow("b", "p2", rows[1].image, None, None, None, extra)
    assert [p.name for p in (tmp_path / "data").iterdir() if p.name.startswith(".")] == []


SAFE_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=12)


@settings(max_examples=40, deadline=None, database=None)
@given(cells=st.lists(st.tuples(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_\-]{0,10}", fullmatch=True), SAFE_TEXT,
                                SAFE_TEXT, st.sampled_from([None, "train", "val", "test"])),
                      min_size=1, max_size=6, unique_by=lambda c: c[0]))
def test_write_read_property(cells, tmp_path_factory) -> None:
    folder = tmp_path_factory.mktemp("m")
    rows = [ManifestRow(cid, patient.strip() or cid, folder / f"{cid}.nii.gz", None, label.strip() or None, split,
                        {"free": label}) for cid, patient, label, split in cells]
    back = read_manifest(write_manifest(rows, folder / "m.csv"), check_files=False)
    assert [(r.case_id, r.patient_id, r.image, r.label, r.split) for r in back] == \
           [(r.case_id, r.patient_id, r.image, r.label, r.split) for r in rows]
    assert [r.extra["free"] for r in back] == [label.strip() for _, _, label, _ in cells]
