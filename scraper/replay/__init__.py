"""A local AniList-compatible server replaying recorded pages, for tests, demo and benchmarks."""
