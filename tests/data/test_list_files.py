"""Full-scale shape check without the real data: the packaged NYUv2 list files."""

import re

import pytest

from ait_hf.data import packaged_nyu_list_file, parse_nyu_list_file

PAIR = re.compile(r"^([^/\s]+)/rgb_(\d{5})\.jpg$")


@pytest.mark.parametrize(("split", "expected"), [("train", 24231), ("test", 654)])
def test_packaged_list_files_have_the_original_sizes_and_parse(split, expected):
    path = packaged_nyu_list_file(split)
    assert path.is_file()
    pairs = parse_nyu_list_file(path)
    assert len(pairs) == expected
    assert len({pair.image for pair in pairs}) == expected  # no duplicates
    for pair in pairs:
        match = PAIR.match(pair.image)
        assert match, pair
        scene, index = match.groups()
        assert pair.depth == f"{scene}/sync_depth_{index}.png"
        assert pair.scene == scene
        assert pair.focal is None


def test_packaged_list_files_are_package_data_and_distinct_splits():
    train = {p.image for p in parse_nyu_list_file(packaged_nyu_list_file("train"))}
    test = {p.image for p in parse_nyu_list_file(packaged_nyu_list_file("test"))}
    # The official test scenes are named by room type only (bathroom, bedroom, ...); train scenes carry ids.
    assert all(re.fullmatch(r"[a-z_]+", p.split("/")[0]) for p in test)
    assert not train & test
    with pytest.raises(ValueError, match="split must be one of"):
        packaged_nyu_list_file("val")
