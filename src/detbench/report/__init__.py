"""Report stage: report steps and renderers."""
