import datetime as dt

from anigenre.scraper.records import html_to_text, media_row

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def test_html_description_becomes_text_with_line_breaks():
    html = "First <i>line</i>.<br><br>\n<br>Second &amp; last.<br></br>(Source: MAL)"
    assert html_to_text(html) == "First line.\n\nSecond & last.\n(Source: MAL)"
    assert html_to_text(None) is None


def test_row_keeps_null_score_null_and_separates_main_studios():
    record = {
        "id": 7,
        "title": {"userPreferred": "Seven", "romaji": None, "english": None},
        "coverImage": {"extraLarge": "http://x/7.jpg", "large": "http://x/7s.jpg", "color": None},
        "startDate": {"year": 2015, "month": 4, "day": None},
        "seasonYear": None,
        "genres": ["Action"],
        "averageScore": None,
        "studios": {
            "edges": [
                {"isMain": True, "node": {"name": "Bones"}},
                {"isMain": False, "node": {"name": "Aniplex"}},
            ]
        },
        "updatedAt": 1639353600,
    }
    row = media_row(record, NOW)
    assert row["average_score"] is None
    assert row["year"] == 2015  # falls back to the start date when seasonYear is absent
    assert row["start_date"] is None  # a partial date is not invented
    assert row["studios"] == ["Bones", "Aniplex"]
    assert row["main_studios"] == ["Bones"]
    assert row["updated_at"] == dt.datetime(2021, 12, 13, tzinfo=dt.UTC)
    assert row["cover_url"] == "http://x/7.jpg"
