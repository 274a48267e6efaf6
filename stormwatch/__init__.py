"""stormwatch: streaming social listening and crisis early warning."""

__version__ = "0.1.0"
