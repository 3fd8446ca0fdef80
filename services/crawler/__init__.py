"""The web crawler (Kendra Web Crawler connector) service."""
