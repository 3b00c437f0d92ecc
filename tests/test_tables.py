import datetime as dt

import pandas as pd
import pyarrow.parquet as pq
from anigenre.core import schemas
from anigenre.core.tables import read_table, upsert


def _row(i, score=None, title="t"):
    return {
        "anilist_id": i,
        "title": title,
        "genres": ["Action"],
        "average_score": score,
        "updated_at": dt.datetime(2021, 1, 1, tzinfo=dt.UTC),
    }


def test_upsert_replaces_by_key_and_never_duplicates(tmp_path):
    path = tmp_path / "media.parquet"
    upsert(path, [_row(1), _row(2)], "anilist_id", schemas.MEDIA)
    upsert(
        path,
        [_row(2, title="new"), _row(3), _row(3, title="last wins")],
        "anilist_id",
        schemas.MEDIA,
    )
    upsert(path, [_row(2, title="new")], "anilist_id", schemas.MEDIA)  # same again: no change
    df = pd.read_parquet(path)
    assert df["anilist_id"].tolist() == [1, 2, 3]
    assert df.set_index("anilist_id")["title"].to_dict() == {1: "t", 2: "new", 3: "last wins"}


def test_written_file_has_the_declared_schema_and_null_stays_null(tmp_path):
    path = tmp_path / "media.parquet"
    upsert(path, [_row(1, score=None), _row(2, score=0)], "anilist_id", schemas.MEDIA)
    assert pq.read_schema(path).remove_metadata().equals(schemas.MEDIA)
    df = pd.read_parquet(path)
    assert pd.isna(df.loc[0, "average_score"]) and df.loc[1, "average_score"] == 0
    assert list(tmp_path.iterdir()) == [path]  # no temp files left behind


def test_absent_table_reads_as_empty_with_schema(tmp_path):
    table = read_table(tmp_path / "none.parquet", schemas.POSTERS)
    assert table.num_rows == 0 and table.schema.equals(schemas.POSTERS)
