"""paperdigest: Hugging Face Daily Papers → DuckDB warehouse → digest email."""

__version__ = "0.1.0"
PROJECT_URL = "https://github.com/paperdigest/paperdigest"
