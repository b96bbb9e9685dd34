"""Pure statistics and formatting for the benchmark report (no root, no processes)."""

import statistics


def summarize(samples):
    """{median, min, max, n, samples} of a non-empty list of numbers."""
    if not samples:
        raise ValueError("no samples")
    values = [float(s) for s in samples]
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
        "samples": values,
    }


def ratio(numerator, denominator):
    """numerator / denominator, or None when either is missing or the denominator is not positive."""
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def meets(value, target):
    """True / False against an upper-bound target, None when there is no value or no target."""
    if value is None or target is None:
        return None
    return value <= target


def fmt_value(value, unit):
    """A number in its unit, short: ms with 1 decimal, s with 2, KiB as an integer."""
    if value is None:
        return "-"
    if unit == "ms":
        return f"{value:.1f}"
    if unit == "s":
        return f"{value:.2f}"
    return f"{value:.0f}"


def fmt_stats(stats, unit):
    """'median [min-max]' or '-'."""
    if not stats:
        return "-"
    return f"{fmt_value(stats['median'], unit)} [{fmt_value(stats['min'], unit)}-{fmt_value(stats['max'], unit)}]"


def fmt_ratio(value, target=None):
    """'0.93' or '1.42 (>1.0)' when a target is missed, '-' when there is no ratio."""
    if value is None:
        return "-"
    text = f"{value:.2f}"
    if target is not None and value > target:
        text += f" (>{target:g})"
    return text
