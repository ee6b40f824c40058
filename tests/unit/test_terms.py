"""Which words of a keyword query find its candidates (``terms.choose``): the rarer ones, rarest first, within a
bound in estimated rows that does not grow with the table."""

from __future__ import annotations

from parley.retrieval.terms import CANDIDATE_ROWS, choose


def test_without_statistics_every_word_finds_candidates() -> None:
    finding, weights = choose(["alpha", "beta", "gamma"], {}, 0.0)
    assert sorted(finding) == ["alpha", "beta", "gamma"]
    assert len(set(weights.values())) == 1


def test_a_small_store_is_not_pruned_and_every_word_is_weighed_by_its_rarity() -> None:
    shares = {"common": 0.4, "usual": 0.1, "rare": 0.001}
    finding, weights = choose(["common", "usual", "rare"], shares, 1_000.0)
    assert finding == ["rare", "usual", "common"]
    assert weights["rare"] > weights["usual"] > weights["common"] > 0


def test_common_words_of_a_large_store_do_not_widen_the_candidates() -> None:
    shares = {"common": 0.4, "usual": 0.1, "rare": 0.001}
    finding, _ = choose(["common", "usual", "rare"], shares, 1_000_000.0)
    assert finding == ["rare"]  # 1,000 rows; with "usual" 101,000


def test_the_candidates_stay_within_the_rows_bound_as_the_table_grows() -> None:
    shares = {"a": 0.001, "b": 0.004, "c": 0.008, "d": 0.02}
    small, _ = choose(["d", "c", "b", "a"], shares, 100_000.0)
    assert small == ["a", "b", "c", "d"]  # 100 + 400 + 800 + 2,000 rows
    large, _ = choose(["d", "c", "b", "a"], shares, 2_000_000.0)
    assert large == ["a", "b"]  # 2,000 + 8,000 rows; with "c" 26,000
    assert sum(shares[w] * 2_000_000.0 for w in large) <= CANDIDATE_ROWS


def test_the_rarest_word_finds_candidates_however_common() -> None:
    finding, _ = choose(["everywhere", "often"], {"everywhere": 0.9, "often": 0.6}, 5_000_000.0)
    assert finding == ["often"]


def test_a_word_the_statistics_do_not_list_counts_as_rarer_than_the_rarest_listed() -> None:
    finding, weights = choose(["listed", "unlisted"], {"listed": 0.002, "other": 0.03}, 1_000_000.0)
    assert finding == ["unlisted", "listed"]
    assert weights["unlisted"] > weights["listed"]


def test_no_words_find_nothing() -> None:
    assert choose([], {"a": 0.1}, 10.0) == ([], {})


def test_a_word_in_no_chunk_is_passed_over_and_weighs_without_dividing_by_zero() -> None:
    finding, weights = choose(["absent", "present"], {"absent": 0.0, "present": 0.9}, 1_000_000.0)
    assert finding == ["present"] and weights["absent"] > weights["present"]
    assert choose(["absent"], {"absent": 0.0}, 10.0)[0] == ["absent"]  # (nothing to find either way)


def test_sqlite_counts_each_word_as_fts5_stems_it() -> None:
    import sqlalchemy as sa
    import sqlean

    from parley.retrieval.terms import FtsTermStats

    engine = sa.create_engine("sqlite://", module=sqlean)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE parley_vector_store_chunks (id INTEGER PRIMARY KEY, text TEXT)"))
        conn.execute(sa.text("CREATE VIRTUAL TABLE parley_vector_store_fts USING fts5(text, vector_store_id, "
                             "tokenize='porter unicode61')"))
        for i in range(10):
            text = "the parser reads tokens" + (" while running a rare zircon check" if i == 3 else "")
            conn.execute(sa.text("INSERT INTO parley_vector_store_chunks (id, text) VALUES (:i, :t)"),
                         {"i": i, "t": text})
            conn.execute(sa.text("INSERT INTO parley_vector_store_fts (rowid, text, vector_store_id) "
                                 "VALUES (:i, :t, 'vs')"), {"i": i, "t": text})
        shares, total = FtsTermStats().shares(conn, ["parsers", "run", "zircon", "absent"])
    assert total == 10.0
    assert shares == {"parsers": 1.0, "run": 0.1, "zircon": 0.1, "absent": 0.0}
    assert choose(["absent", "zircon", "parsers"], shares, total)[0] == ["zircon", "parsers"]
