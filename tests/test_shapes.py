import pytest
from hypothesis import given
from hypothesis import strategies as st

from rsz_export.errors import UsageError
from rsz_export.shapes import MAX_SIZE, MIN_SIZE, BatchRange, InputShape, Profile, Resolution, parse_sizes, parse_sweep


def test_resolution_parse_square_and_rect():
    assert Resolution.parse("224") == Resolution(224, 224)
    assert Resolution.parse(" 227x341 ") == Resolution(227, 341)
    assert Resolution.parse("227X341") == Resolution(227, 341)
    assert str(Resolution(227, 341)) == "227x341"


@pytest.mark.parametrize("text", ["", "x", "224x", "a", "-224", "224x-3", "224.5", "1e3", "224,300", "224x300x2"])
def test_resolution_parse_rejects_malformed(text):
    with pytest.raises(UsageError, match="cannot read size"):
        Resolution.parse(text)


@pytest.mark.parametrize("h,w", [(MIN_SIZE - 1, 224), (224, MAX_SIZE + 1), (0, 0), (31, 31)])
def test_resolution_range(h, w):
    with pytest.raises(UsageError, match=r"32\.\.4096"):
        Resolution(h, w)


def test_the_hint_speaks_of_the_bound_that_was_crossed():
    with pytest.raises(UsageError) as too_big:
        Resolution(224, 5000)
    assert "activations" in too_big.value.hint and "below 32" not in too_big.value.hint
    with pytest.raises(UsageError) as too_small:
        Resolution(16, 224)
    assert "below 32 leave no feature map" in too_small.value.hint


def test_parse_sizes_dedupes_in_order():
    assert parse_sizes("224,227x341,224") == [Resolution(224, 224), Resolution(227, 341)]
    with pytest.raises(UsageError):
        parse_sizes(" , ")


def test_parse_sweep_inclusive_and_bad():
    sizes = parse_sweep("224:800:32")
    assert sizes[0] == Resolution(224, 224) and sizes[-1] == Resolution(800, 800) and len(sizes) == 19
    assert parse_sweep("224:250:20")[-1] == Resolution(250, 250)
    for bad in ("224:800", "800:224:32", "224:800:0", "a:b:c"):
        with pytest.raises(UsageError):
            parse_sweep(bad)


def test_batch_range_forms():
    assert BatchRange.parse("8") == BatchRange(1, 8, 8)
    assert BatchRange.parse("1-32") == BatchRange(1, 32, 32)
    assert BatchRange.parse("1:8:32") == BatchRange(1, 8, 32)
    for bad in ("0", "8:4", "x", "1:2:3:4", "2000"):
        with pytest.raises(UsageError):
            BatchRange.parse(bad)


def test_profile_round_trip_and_covers():
    p = Profile(InputShape(1, 224, 224), InputShape(4, 256, 256), InputShape(8, 320, 320))
    assert Profile.from_dict(p.to_dict()) == p
    assert p.covers(1, 224, 320) and p.covers(8, 320, 224)
    assert not p.covers(9, 224, 224) and not p.covers(1, 321, 224) and not p.covers(1, 223, 300)
    with pytest.raises(UsageError):
        Profile(InputShape(1, 300, 300), InputShape(1, 256, 256), InputShape(1, 320, 320))
    with pytest.raises(UsageError, match="3 channels"):
        Profile.from_dict({"min": [1, 1, 224, 224], "opt": [1, 3, 224, 224], "max": [1, 3, 224, 224]})


@given(st.integers(MIN_SIZE, MAX_SIZE), st.integers(MIN_SIZE, MAX_SIZE))
def test_size_string_round_trip(h, w):
    assert Resolution.parse(str(Resolution(h, w))) == Resolution(h, w)
    assert parse_sizes(f"{h}x{w},{h}") == list(dict.fromkeys([Resolution(h, w), Resolution(h, h)]))
