"""The one GraphQL query we send, and the variables for a page of it."""

from __future__ import annotations

PER_PAGE = 50  # AniList's maximum

MEDIA_PAGE_QUERY = """
query ($page: Int, $perPage: Int, $seasonYear: Int, $format_in: [MediaFormat],
       $isAdult: Boolean, $sort: [MediaSort]) {
  Page(page: $page, perPage: $perPage) {
    pageInfo { currentPage hasNextPage }
    media(type: ANIME, seasonYear: $seasonYear, format_in: $format_in,
          isAdult: $isAdult, sort: $sort) {
      id idMal
      title { romaji english userPreferred }
      coverImage { extraLarge large color }
      startDate { year month day }
      season seasonYear format status episodes duration
      genres averageScore popularity isAdult
      studios { edges { isMain node { name } } }
      description
      updatedAt
    }
  }
}
"""

FULL_SORT = ("POPULARITY_DESC", "ID")
INCREMENTAL_SORT = ("UPDATED_AT_DESC", "ID")


def page_variables(
    year: int,
    page: int,
    *,
    formats: tuple[str, ...] | None,
    include_adult: bool,
    sort: tuple[str, ...],
) -> dict:
    variables: dict = {
        "page": page,
        "perPage": PER_PAGE,
        "seasonYear": year,
        "sort": list(sort),
    }
    if formats:
        variables["format_in"] = list(formats)
    # isAdult omitted means "both" on AniList; we only ask for both when adult content is on.
    if not include_adult:
        variables["isAdult"] = False
    return variables
