"""Typed settings for anigenre: one object, read from defaults < TOML file < env < CLI flags."""

from anigenre.config.settings import Settings, load_settings

__all__ = ["Settings", "load_settings"]
