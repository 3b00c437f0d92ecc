from pathlib import Path

import pytest
from anigenre.config import load_settings
from anigenre.core.errors import ConfigError


def test_defaults_point_at_real_anilist_and_local_data():
    s = load_settings(env={})
    assert s.anilist_url == "https://graphql.anilist.co"
    assert s.data_dir == Path("data")
    assert s.broker_url is None


def test_flag_beats_env_beats_file(tmp_path):
    cfg = tmp_path / "a.toml"
    cfg.write_text(
        '[anigenre]\ndata_dir = "from-file"\nposter_concurrency = 3\nrate_limit_per_min = 10\n'
    )
    env = {"ANIGENRE_DATA_DIR": "from-env", "ANIGENRE_RATE_LIMIT_PER_MIN": "20"}
    s = load_settings(overrides={"data_dir": "from-flag"}, env=env, config_file=cfg)
    assert s.data_dir == Path("from-flag")
    assert s.rate_limit_per_min == 20.0
    assert s.poster_concurrency == 3


def test_config_file_can_be_named_by_env(tmp_path):
    cfg = tmp_path / "b.toml"
    cfg.write_text("poster_concurrency = 5\n")
    assert load_settings(env={"ANIGENRE_CONFIG": str(cfg)}).poster_concurrency == 5


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"ANIGENRE_RATE_LIMIT_PER_MIN": "fast"}, "rate_limit_per_min"),
        ({"ANIGENRE_POSTER_CONCURRENCY": "0"}, "poster_concurrency"),
        ({"ANIGENRE_NOPE": "1"}, "unknown environment variable ANIGENRE_NOPE"),
        # Checked at load time, not by beat's first tick at 04:30:
        ({"ANIGENRE_SCHEDULE_INCREMENTAL_SCRAPE": "61 4 * * *"}, "not a valid crontab"),
        ({"ANIGENRE_SCHEDULE_INCREMENTAL_SCRAPE": "30 4 * *"}, "write five fields"),
        ({"ANIGENRE_SCHEDULE_INCREMENTAL_SCRAPE": "30 4 * * funday"}, "not a valid crontab"),
        ({"ANIGENRE_SCHEDULE_SCRAPE_YEARS": "2030-2013"}, "schedule_scrape_years"),
        ({"ANIGENRE_SCHEDULE_SCRAPE_YEARS": "recent"}, "write it like 2013-2021"),
        ({"ANIGENRE_INBOX_SCHEDULE": "0"}, "give seconds between ticks above 0"),
        ({"ANIGENRE_INBOX_SCHEDULE": "*/10 * * *"}, "or give seconds between ticks"),
        ({"ANIGENRE_INBOX_SCHEDULE": "every hour"}, "write five fields"),
        ({"ANIGENRE_INBOX": "gs://bucket/inbox"}, "neither a local folder nor an s3://"),
    ],
)
def test_bad_values_are_one_clear_line(env, fragment):
    with pytest.raises(ConfigError) as err:
        load_settings(env=env)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_key_in_file_is_rejected(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("colour = 'blue'\n")
    with pytest.raises(ConfigError, match="unknown keys"):
        load_settings(env={}, config_file=cfg)


def test_valid_schedules_load_and_an_empty_one_means_none():
    s = load_settings(env={"ANIGENRE_SCHEDULE_INCREMENTAL_SCRAPE": "*/15 2-5 * * mon-fri"})
    assert s.schedule_incremental_scrape == "*/15 2-5 * * mon-fri"
    assert (
        load_settings(env={"ANIGENRE_SCHEDULE_INCREMENTAL_SCRAPE": ""}).schedule_incremental_scrape
        is None
    )


def test_inbox_settings_take_seconds_or_a_crontab_and_default_their_output(tmp_path):
    s = load_settings(env={"ANIGENRE_INBOX": "s3://bucket/in", "ANIGENRE_DATA_DIR": "d"})
    assert s.inbox == "s3://bucket/in" and s.inbox_model == "production"
    assert s.inbox_schedule == "*/10 * * * *"
    assert s.inbox_out_dir() == Path("d") / "inbox-predictions"
    assert load_settings(env={"ANIGENRE_INBOX_SCHEDULE": " 2.5 "}).inbox_schedule == "2.5"
    cfg = tmp_path / "i.toml"
    cfg.write_text('inbox = "file:///srv/inbox"\ninbox_schedule = 30\ninbox_out = "o"\n')
    s = load_settings(env={}, config_file=cfg)
    assert (s.inbox, s.inbox_schedule, s.inbox_out_dir()) == ("/srv/inbox", "30", Path("o"))
    assert load_settings(env={"ANIGENRE_INBOX": ""}).inbox is None
