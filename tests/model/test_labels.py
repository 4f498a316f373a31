"""Class names: both file formats, every refusal with its reason, and the defaults. No torch."""

from __future__ import annotations

import hashlib
import json

import pytest

from rsz_export.errors import UsageError
from rsz_export.model.labels import check_count, default_names, normal_name, read_labels

TEAM = ["cat", "dog", "traffic cone"]


def test_one_name_per_line_and_a_json_list_read_the_same(tmp_path):
    lines = tmp_path / "names.txt"
    lines.write_bytes("\ufeffcat\r\n  dog \ntraffic cone\n\n".encode())  # BOM, CRLF, padding, trailing blank
    listed = tmp_path / "names.json"
    listed.write_text(json.dumps(TEAM, indent=1))
    assert read_labels(lines)[0] == read_labels(listed)[0] == tuple(TEAM)
    assert read_labels(lines)[1] == hashlib.sha256(lines.read_bytes()).hexdigest()


BAD = [
    ("empty file", b"", "holds no class names"),
    ("only blank lines", b"\n \n", "holds no class names"),
    ("empty JSON list", b"[]", "holds no class names"),
    ("blank line inside", b"cat\n\ndog\n", "line(s) 2 are empty"),
    ("duplicate", b"cat\ndog\ncat\n", "'cat' (index 0) and 'cat' (index 2)"),
    ("duplicate once normalised", b"Traffic_Cone\ntraffic-cone\n", "names a class twice"),
    ("JSON not a list of strings", b'["cat", 3]', "JSON list of strings"),
    ("broken JSON", b'["cat", ', "not valid JSON"),
    ("JSON name with a line break", b'["cat", "d\\nog"]', "hold control or invisible characters"),
    ("not UTF-8", b"caf\xe9\n", "not UTF-8"),
]


@pytest.mark.parametrize("content,phrase", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_labels_files_are_usage_errors(tmp_path, content, phrase):
    path = tmp_path / "names.txt"
    path.write_bytes(content)
    with pytest.raises(UsageError) as info:
        read_labels(path)
    assert phrase in str(info.value) and str(path) in str(info.value)


def test_missing_or_folder_labels_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        read_labels(tmp_path / "none.txt")
    with pytest.raises(UsageError, match="is not a regular file"):
        read_labels(tmp_path)


def test_count_must_match_the_head():
    check_count(TEAM, 3, "--labels names.txt", "fc.weight has 3 rows")
    with pytest.raises(UsageError, match=r"has 3 class name\(s\) but the model has 10 classes \(fc.weight has 10"):
        check_count(TEAM, 10, "--labels names.txt", "fc.weight has 10 rows")


def test_defaults_are_imagenet_for_1000_classes_else_indices():
    assert default_names(1000)[0] == "tench" and len(default_names(1000)) == 1000
    assert default_names(3) == ["class 0", "class 1", "class 2"]
    assert normal_name("  Golden_Retriever ") == normal_name("golden-retriever") == "golden retriever"
