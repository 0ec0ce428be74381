"""Measuring matte quality: clips with a known alpha, the literature's metrics, and the
post-processing settings compared on them (``scripts/bench_quality.py``,
``scripts/quality_report.py``)."""
