"""Known pitfalls before they cost a day: the check runner and context, probe, purge guard, quota parsers, lints."""
