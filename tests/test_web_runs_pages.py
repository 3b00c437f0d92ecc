"""The Runs page in Chromium over more runs than one page: the newest 20 first, the older
ones a page further, and a run named in the address opened wherever it is (issue 21)."""

from __future__ import annotations

from anigenre.config import load_settings

from tests.procs import own_redis
from tests.run_records import local_put, seed_finished_runs
from tests.test_web_browser import START_S, UPLOAD_S, _nav, _serve, _settle, browser

__all__ = ["browser"]  # the module-scoped fixture


def test_the_runs_page_shows_the_newest_twenty_and_pages_to_the_rest(browser, tmp_path):
    newest = seed_finished_runs(local_put(tmp_path), 25, str(tmp_path / "out"))[::-1]
    settings = load_settings(overrides={"data_dir": tmp_path / "data"}, env={})
    with own_redis(tmp_path / "redis") as (broker, _):
        served = _serve(settings, tmp_path, broker)
        _, url, *_ = next(served)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(url)
            _nav(page, "Runs")
            page.get_by_text("25 run(s), newest first; 1-20 shown").wait_for(timeout=START_S * 1000)
            page.get_by_role("heading", name=f"Run {newest[0]}").wait_for()
            cells = page.get_by_test_id("stDataFrame").first.get_by_role(
                "gridcell", include_hidden=True
            )
            cells.filter(has_text=newest[0]).wait_for(state="attached")
            assert cells.filter(has_text=newest[20]).count() == 0, "page 2's run on page 1"
            page.get_by_test_id("stPaginationNext").first.click()
            page.get_by_text("25 run(s), newest first; 21-25 shown").wait_for(
                timeout=UPLOAD_S * 1000
            )
            cells.filter(has_text=newest[24]).wait_for(state="attached")
            assert cells.filter(has_text=newest[0]).count() == 0
            _settle(page)

            # A shared link to a run on another page opens it.
            page.goto(f"{url}/runs?run={newest[3]}")
            page.get_by_role("heading", name=f"Run {newest[3]}").wait_for(timeout=UPLOAD_S * 1000)
            page.get_by_text("complete: 0/0 rows").wait_for()
            page.close()
        finally:
            served.close()
