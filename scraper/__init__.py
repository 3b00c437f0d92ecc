"""AniList scraper: GraphQL client, record parsing, poster downloads, resumable runs."""
