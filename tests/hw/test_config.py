import dataclasses

import pytest

from hw.config import (
    PRESETS,
    AccelConfig,
    ArrayConfig,
    AttentionConfig,
    BufferConfig,
    GemmConfig,
    LinearConfig,
    RequantConfig,
    ResidualConfig,
    SoftmaxConfig,
    required_acc_width,
)


@pytest.mark.parametrize("name", PRESETS)
def test_preset_round_trip(name, tmp_path):
    cfg = AccelConfig.preset(name)
    assert cfg.name == name
    path = tmp_path / f"{name}.toml"
    cfg.to_toml(path)
    assert AccelConfig.from_toml(path) == cfg


def test_tiny_is_2x2():
    cfg = AccelConfig.preset("tiny")
    assert (cfg.array.rows, cfg.array.cols) == (2, 2)


def test_acc_width_derived_from_max_k():
    # 64 products of (-128)*(-128) = 2**14 sum to 2**20, which needs 21 magnitude bits + sign.
    assert required_acc_width(8, 64) == 22
    cfg = AccelConfig(gemm=GemmConfig(max_k=64))
    assert cfg.acc_width == 22
    # K = 1: 2**14 needs 15 bits + sign.
    assert required_acc_width(8, 1) == 16
    assert AccelConfig(gemm=GemmConfig(max_k=65)).acc_width == 22
    assert AccelConfig(gemm=GemmConfig(max_k=128)).acc_width == 23


def test_explicit_acc_width_kept_if_wide_enough():
    assert AccelConfig(gemm=GemmConfig(max_k=64, acc_width=32)).acc_width == 32


def test_acc_width_that_could_overflow():
    with pytest.raises(ValueError, match=r"GEMM acc_width must be at least 22 to sum max_k=64 "
                                         r"products of 8-bit operands without overflow, not 21"):
        AccelConfig(gemm=GemmConfig(max_k=64, acc_width=21))


@pytest.mark.parametrize("kwargs, exc, message", [
    ({"rows": 0}, ValueError, "Array rows must be an integer from 1 to 64, not 0"),
    ({"cols": -2}, ValueError, "Array cols must be an integer from 1 to 64, not -2"),
    ({"in_width": 3}, ValueError, "Array in_width must be an integer from 4 to 16, not 3"),
    ({"rows": 2.0}, TypeError, "Array rows must be an integer, not 2.0"),
    ({"rows": True}, TypeError, "Array rows must be an integer, not True"),
    ({"dsp_pairs": 1}, TypeError, "Array dsp_pairs must be a boolean, not 1"),
])
def test_bad_array(kwargs, exc, message):
    with pytest.raises(exc, match=message):
        ArrayConfig(**kwargs)


@pytest.mark.parametrize("depth, exc, message", [
    (0, ValueError, "^Buffers depth must be an integer from 2 to 65536, not 0$"),
    (1, ValueError, "^Buffers depth must be an integer from 2 to 65536, not 1$"),
    (1 << 17, ValueError, "^Buffers depth must be an integer from 2 to 65536, not 131072$"),
    (384, ValueError, "^Buffers depth must be a power of two, not 384$"),
    (256.0, TypeError, r"^Buffers depth must be an integer, not 256\.0$"),
    (True, TypeError, "^Buffers depth must be an integer, not True$"),
])
def test_bad_buffers(depth, exc, message):
    with pytest.raises(exc, match=message):
        BufferConfig(depth)


def test_buffers_depth(tmp_path):
    # A TOML [buffers] section sets them: 256 words (the default) but on the ulx3s preset,
    # whose 2048 hold MiniLM's rows and heads and large Linear blocks.
    assert {name: AccelConfig.preset(name).buffers.depth for name in PRESETS} == {
        "tiny": 256, "icebreaker": 256, "ulx3s": 2048}
    assert AccelConfig().buffers.depth == 256
    path = tmp_path / "deep.toml"
    path.write_text('[array]\nrows = 4\n\n[buffers]\ndepth = 512\n')
    cfg = AccelConfig.from_toml(path)
    assert cfg.buffers == BufferConfig(512) and cfg.array.rows == 4
    assert cfg.to_dict()["buffers"] == {"depth": 512}
    again = tmp_path / "again.toml"
    cfg.to_toml(again)
    assert "[buffers]\ndepth = 512\n" in again.read_text()
    assert AccelConfig.from_toml(again) == cfg
    path.write_text('[buffers]\ndepth = 100\n')
    with pytest.raises(ValueError, match="^Buffers depth must be a power of two, not 100$"):
        AccelConfig.from_toml(path)
    with pytest.raises(ValueError, match=r"^Key in section 'buffers' must be one of depth, "
                                         r"not 'words'$"):
        AccelConfig.from_dict({"buffers": {"words": 512}})


def test_bad_requant():
    with pytest.raises(TypeError, match="^Requant serial must be a boolean, not 'yes'$"):
        RequantConfig(serial="yes")


def test_unknown_key():
    with pytest.raises(ValueError, match=r"Config key must be one of .*, not 'arary'"):
        AccelConfig.from_dict({"arary": {"rows": 2}})
    with pytest.raises(ValueError, match=r"Key in section 'array' must be one of "
                                         r"cols, dsp_pairs, in_width, rows, not 'row'"):
        AccelConfig.from_dict({"array": {"row": 2}})


def test_wrong_type_in_toml(tmp_path):
    path = tmp_path / "x.toml"
    path.write_text('[array]\nrows = "four"\n')
    with pytest.raises(TypeError, match="Array rows must be an integer, not 'four'"):
        AccelConfig.from_toml(path)
    path.write_text('array = 3\n')
    with pytest.raises(TypeError, match="Config section 'array' must be a table, not 3"):
        AccelConfig.from_toml(path)


def test_bad_files(tmp_path):
    with pytest.raises(ValueError, match="Config file must exist"):
        AccelConfig.from_toml(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[array\n")
    with pytest.raises(ValueError, match="Config file must be valid TOML"):
        AccelConfig.from_toml(bad)


def test_unknown_preset():
    with pytest.raises(ValueError, match="Preset must be one of tiny, icebreaker, ulx3s, "
                                         "not 'big'"):
        AccelConfig.preset("big")


def test_config_is_frozen():
    cfg = AccelConfig()
    with pytest.raises(AttributeError):
        cfg.name = "x"


def test_section_type_checked():
    with pytest.raises(TypeError, match="Config section 'array' must be a ArrayConfig"):
        AccelConfig(array={"rows": 2})


def test_shared_softmax():
    # One softmax serves RUN SOFTMAX and attention when lanes, output width and variant agree:
    # the longer rows and the wider scores of the two.
    cfg = AccelConfig(attention=AttentionConfig(max_seq_len=100, max_head_dim=8))
    shared = cfg.shared_softmax
    assert shared.max_len == 100 and shared.in_width == max(24, cfg.attention_softmax.in_width)
    assert (shared.lanes, shared.out_width) == (1, 8)
    tiny = AccelConfig.preset("tiny")
    assert tiny.shared_softmax == dataclasses.replace(
        tiny.softmax, max_len=max(tiny.softmax.max_len, tiny.attention.max_seq_len),
        in_width=max(tiny.softmax.in_width, tiny.attention_softmax.in_width))
    # The ulx3s preset gives attention a softmax of 3 lanes beside RUN SOFTMAX's one-lane unit
    # (fewer than "auto"'s 6 for its 22x6 array: its MULT18X18Ds are all taken).
    ulx3s = AccelConfig.preset("ulx3s")
    assert ulx3s.attention.softmax_lanes == ulx3s.attention_lanes == 3
    assert ulx3s.replace(attention=AttentionConfig(max_head_dim=32)).attention_lanes == 6
    assert ulx3s.shared_softmax is None and ulx3s.softmax.lanes == 1
    assert AccelConfig(attention=AttentionConfig(softmax_lanes=2)).shared_softmax is None
    assert AccelConfig(softmax=SoftmaxConfig(out_width=10)).shared_softmax is None
    assert AccelConfig(softmax=SoftmaxConfig(enabled=False)).shared_softmax is None
    assert AccelConfig(attention=AttentionConfig(enabled=False)).shared_softmax is None


@pytest.mark.parametrize("rows, cols, head_dim, lanes", [
    (2, 2, 32, 1), (4, 4, 32, 1), (6, 6, 32, 3), (8, 8, 32, 4), (8, 8, 64, 2), (16, 8, 32, 8),
    (8, 8, 8, 8), (2, 3, 2, 3),
])
def test_attention_lanes_scale_with_the_array(rows, cols, head_dim, lanes):
    # "auto": the fewest lanes dividing the columns that reach 2 * R * C / d, at most C.
    cfg = AccelConfig(array=ArrayConfig(rows, cols),
                      attention=AttentionConfig(max_head_dim=head_dim, softmax_lanes="auto"))
    assert cfg.attention_lanes == cfg.attention_softmax.lanes == lanes
    assert AccelConfig.from_dict(cfg.to_dict()) == cfg
    assert AttentionConfig(max_head_dim=head_dim) == cfg.attention     # "auto" is the default
    # An explicit count is kept, and checked against the columns.
    set_ = cfg.replace(attention=AttentionConfig(max_head_dim=head_dim, softmax_lanes=1))
    assert set_.attention_lanes == 1
    assert AccelConfig.from_dict(set_.to_dict()) == set_
    if cols % 2:
        with pytest.raises(ValueError, match="softmax_lanes must divide array cols"):
            cfg.replace(attention=AttentionConfig(max_head_dim=head_dim, softmax_lanes=2))
    with pytest.raises(ValueError, match=r"softmax_lanes must be an integer from 1 to 16 or "
                                         r"\"auto\", not 'fast'"):
        AttentionConfig(softmax_lanes="fast")


def test_linear_and_residual_sections():
    # On for the presets that have room, off on the nearly full iCEBreaker.
    for name, on in (("tiny", True), ("ulx3s", True), ("icebreaker", False)):
        cfg = AccelConfig.preset(name)
        assert cfg.linear.enabled is on and cfg.residual.enabled is on
    assert ResidualConfig().max_shift == 32
    with pytest.raises(TypeError, match="Linear enabled must be a boolean, not 'yes'"):
        LinearConfig(enabled="yes")
    with pytest.raises(ValueError, match="Residual mult_width must be an integer from 1 to 18, "
                                         "not 19"):
        ResidualConfig(mult_width=19)


def test_half_rate_requantizer_not_serial():
    with pytest.raises(TypeError, match="^Requant half_rate must be a boolean, not 1$"):
        RequantConfig(half_rate=1)
    with pytest.raises(ValueError, match=r"^Requant half_rate applies to a lane per element; "
                                         r"serial already shares"):
        RequantConfig(serial=True, half_rate=True)
    assert RequantConfig(half_rate=True).half_rate


def test_serial_requantizer_without_linear():
    with pytest.raises(ValueError, match=r"^Requant serial must be false with linear enabled"):
        AccelConfig(requant=RequantConfig(serial=True), linear=LinearConfig(enabled=True))
    cfg = AccelConfig(requant=RequantConfig(serial=True), linear=LinearConfig(enabled=False))
    assert cfg.requant.serial and not cfg.linear.enabled
