from pynode.protocol.flags import (
    DEFAULT,
    MANDATORY,
    MANDATORY_25,
    MANDATORY_26,
    DFlag,
    default_flags,
    expand_mandatory_25,
    flag_names,
    missing_flags,
)


def test_flag_values_match_dist_hrl():
    assert DFlag.PUBLISHED == 0x1
    assert DFlag.DIST_HDR_ATOM_CACHE == 0x2000
    assert DFlag.UTF8_ATOMS == 0x10000
    assert DFlag.FRAGMENTS == 0x800000
    assert DFlag.HANDSHAKE_23 == 0x1000000
    assert DFlag.UNLINK_ID == 0x2000000
    assert DFlag.MANDATORY_25_DIGEST == 0x4000000
    assert DFlag.SPAWN == 1 << 32
    assert DFlag.NAME_ME == 1 << 33
    assert DFlag.V4_NC == 1 << 34
    assert DFlag.ALIAS == 1 << 35
    assert DFlag.ALTACT_SIG == 1 << 37


def test_mandatory_sets():
    assert int(MANDATORY_25) == 0x01070F94
    assert MANDATORY_26 == DFlag.V4_NC | DFlag.UNLINK_ID
    assert MANDATORY == MANDATORY_25 | MANDATORY_26


def test_default_flags():
    visible = default_flags()
    hidden = default_flags(hidden=True)
    assert visible & DFlag.PUBLISHED and not hidden & DFlag.PUBLISHED
    assert visible & MANDATORY == MANDATORY
    for flag in (
        DFlag.SPAWN,
        DFlag.ALIAS,
        DFlag.DIST_MONITOR,
        DFlag.DIST_MONITOR_NAME,
        DFlag.EXIT_PAYLOAD,
        DFlag.SEND_SENDER,
        DFlag.MANDATORY_25_DIGEST,
    ):
        assert visible & flag
    assert not DEFAULT & (DFlag.FRAGMENTS | DFlag.DIST_HDR_ATOM_CACHE | DFlag.PUBLISHED)
    assert default_flags(fragments=True) & DFlag.FRAGMENTS
    assert default_flags(atom_cache=True) & DFlag.DIST_HDR_ATOM_CACHE


def test_otp25_offer_is_accepted():
    otp25 = 0xD07DF7FBD  # what OTP 25.2.3 offers
    assert not missing_flags(otp25)


def test_digest_expansion_and_missing():
    digest_only = DFlag.MANDATORY_25_DIGEST | MANDATORY_26
    assert expand_mandatory_25(digest_only) & MANDATORY_25 == MANDATORY_25
    assert not missing_flags(digest_only)
    assert missing_flags(MANDATORY_25) == MANDATORY_26
    assert missing_flags(0, DFlag.SPAWN) == DFlag.SPAWN


def test_flag_names_include_unknown_bits():
    assert flag_names(DFlag.PUBLISHED | DFlag.SPAWN) == ["PUBLISHED", "SPAWN"]
    assert flag_names(1 << 50) == ["UNKNOWN<0x4000000000000>"]
    assert DFlag(1 << 50 | 1) & DFlag.PUBLISHED  # unknown bits survive


def test_a_flag_word_keeps_its_type_and_names_its_bits():
    import pickle

    from pynode.protocol import flags

    word = DFlag.PUBLISHED | DFlag.SPAWN
    assert type(word) is DFlag and type(1 | DFlag.SPAWN) is DFlag and type(word & 1) is DFlag
    assert type(word ^ DFlag.SPAWN) is DFlag and word ^ DFlag.SPAWN == DFlag.PUBLISHED
    assert word.name == "PUBLISHED|SPAWN" and DFlag(0).name is None
    assert repr(word) == "<DFlag.PUBLISHED|SPAWN: 0x100000001>" and str(word) == str(0x100000001)
    assert list(word) == [DFlag.PUBLISHED, DFlag.SPAWN] and all(type(b) is DFlag for b in word)
    assert DFlag.SPAWN in word and DFlag.ALIAS not in word and (DFlag.SPAWN | DFlag.ALIAS) not in word
    assert pickle.loads(pickle.dumps(word)) == word

    # the complement stays a 64-bit word, and no word makes the names loop
    assert type(~word) is DFlag and 0 < ~word < 1 << 64 and not ~word & word
    assert ~word | word == (1 << 64) - 1
    assert len(flag_names(-1)) == 64 and repr(DFlag(-1)).startswith("<DFlag.PUBLISHED|")

    class Other:  # an operand int does not know: its reflected operator answers
        def __rand__(self, other: int) -> str:
            return "reflected"

    assert word & Other() == "reflected"
    # every declared constant has its bit, and no two share one
    declared = [n for n in DFlag.__annotations__ if n.isupper()]
    assert declared == list(flags._BITS)
    assert all(type(getattr(DFlag, n)) is DFlag for n in declared)
    assert len({int(getattr(DFlag, n)) for n in declared}) == len(declared)
